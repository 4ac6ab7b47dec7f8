-- `attune bench --mode workflow`: how many of the workflow executions $1 have not ended
-- yet (polled until none is left; the figures are read after that).
SELECT count(*) AS "unfinished!"
  FROM attune.execution
 WHERE id = ANY($1)
   AND status NOT IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors')
