-- The worker's claim: up to $3 scheduled executions of the runner types it runs, in
-- priority order, in one statement. The ORDER BY is exactly the partial index
-- execution_ready (priority DESC, run_after, id) WHERE status = 'scheduled', so a claim
-- never sorts the backlog.
WITH picked AS (
    SELECT id FROM attune.execution
     WHERE status = 'scheduled' AND run_after <= now() AND runner_type = ANY($2)
     ORDER BY priority DESC, run_after, id
     LIMIT $3
       FOR UPDATE SKIP LOCKED)
UPDATE attune.execution e
   SET status = 'running', worker_id = $1, started_at = clock_timestamp(), updated_at = clock_timestamp()
  FROM picked
 WHERE e.id = picked.id
RETURNING e.id, e.tenant_id, e.action_id, e.action_ref, e.runner_type, e.parameters, e.secret_params,
          e.attempt, e.timeout_seconds
