-- The bridge's publisher moves its cursor $1 to $2 once RabbitMQ confirmed every row up to
-- there. Never backwards: a write from a publisher that lost its lock cannot undo its
-- successor's progress (only the lock holder writes, on the lock's own session).
INSERT INTO attune.consumer_cursor AS c (name, last_id, updated_at)
VALUES ($1, $2, now())
ON CONFLICT (name) DO UPDATE
   SET last_id = GREATEST(c.last_id, EXCLUDED.last_id),
       updated_at = now()
