-- /ready's view of the RabbitMQ bridge: its cursor (consumer $1), when it last moved, and
-- the newest change-log id (the cursor when the log is empty); no row when the bridge never ran.
SELECT c.last_id AS cursor,
       c.updated_at,
       COALESCE((SELECT max(id) FROM attune.change_log), c.last_id) AS "newest_id!"
  FROM attune.consumer_cursor c
 WHERE c.name = $1
