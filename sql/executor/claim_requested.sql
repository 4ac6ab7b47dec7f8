-- The scheduler's claim: requested executions in arrival order (partial index
-- execution_requested (id) WHERE status = 'requested').
SELECT e.id, e.tenant_id, e.action_id, e.action_ref, e.runner_type, e.parameters, e.secret_params
  FROM attune.execution e
 WHERE e.id IN (SELECT id FROM attune.execution
                 WHERE status = 'requested'
                 ORDER BY id
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
 ORDER BY e.id
