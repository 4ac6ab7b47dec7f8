-- Where the bridge's publisher resumes: the last change-log id whose publication RabbitMQ
-- confirmed, stored under consumer name $1 (no row: from the start of the retained log).
SELECT last_id FROM attune.consumer_cursor WHERE name = $1
