-- `attune bench --mode workflow`: how many children of the workflow executions $1 exist
-- and how many of them have ended (the progress line printed while a scenario runs).
SELECT count(*) AS "children!",
       count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors')) AS "ended!"
  FROM attune.execution
 WHERE parent_id = ANY($1)
