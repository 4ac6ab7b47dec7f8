-- Retention of one history family ($1) on the server's clock: drops, oldest first, the
-- partitions closed more than $2 seconds ago, stopping at the first that holds work in
-- flight. One row per partition looked at (`attune.history_retain`, migration
-- 20261130000042: refuses a retention under the family's floor).
SELECT partition_name AS "partition!", dropped AS "dropped!", reason
  FROM attune.history_retain($1, make_interval(secs => $2))
