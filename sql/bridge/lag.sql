-- /ready's view of the RabbitMQ bridge: its cursor (consumer $1), when it last moved, the
-- newest change-log id (the cursor when the log is empty), and how many rows it has still
-- to publish, counted (ids jump at each partition cut of the change log, so their difference
-- is no count) up to 100,001 along the primary key.
SELECT c.last_id AS cursor,
       c.updated_at,
       COALESCE((SELECT max(id) FROM attune.change_log), c.last_id) AS "newest_id!",
       (SELECT count(*) FROM (SELECT 1 FROM attune.change_log l WHERE l.id > c.last_id LIMIT 100001) behind) AS "behind!"
  FROM attune.consumer_cursor c
 WHERE c.name = $1
