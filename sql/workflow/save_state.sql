-- Writes a workflow's state after a step (created at its start).
INSERT INTO attune.workflow_state
    (execution_id, tenant_id, definition, tasks, variables, failed_tasks, depth, active, abort_error, items,
     wants_step, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, clock_timestamp())
ON CONFLICT (execution_id) DO UPDATE
   SET tasks = EXCLUDED.tasks, variables = EXCLUDED.variables, failed_tasks = EXCLUDED.failed_tasks,
       active = EXCLUDED.active, abort_error = EXCLUDED.abort_error,
       items = CASE WHEN $12 THEN EXCLUDED.items ELSE attune.workflow_state.items END,
       wants_step = EXCLUDED.wants_step, version = attune.workflow_state.version + 1, updated_at = clock_timestamp()
