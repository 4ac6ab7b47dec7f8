-- `attune bench --mode workflow`: the most children of workflow $1 running at the same
-- moment (started_at .. finished_at), to check a with-items task's concurrency limit: a
-- +1 at each start and a -1 at each end, summed in time order (an end before a start at
-- the same instant).
WITH edges AS (
    SELECT started_at AS t, 1 AS d FROM attune.execution WHERE parent_id = $1 AND started_at IS NOT NULL
    UNION ALL
    SELECT finished_at, -1 FROM attune.execution WHERE parent_id = $1 AND started_at IS NOT NULL AND finished_at IS NOT NULL
)
SELECT COALESCE(max(running), 0)::bigint AS "most!"
  FROM (SELECT sum(d) OVER (ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS running FROM edges) s
