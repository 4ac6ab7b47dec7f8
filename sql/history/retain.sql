-- Retention of one history family ($1) at time $3: drops, oldest first, the partitions
-- closed more than $2 seconds ago, stopping at the first that holds work in flight. One row
-- per partition looked at (`attune.history_retain`, migration 20261130000042).
SELECT partition_name AS "partition_name!", dropped AS "dropped!", reason
  FROM attune.history_retain($1, make_interval(secs => $2), $3)
