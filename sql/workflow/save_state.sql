-- Writes a workflow's state after a step (created at its start), and keeps the workflow's
-- status in step with its children (the caller holds its lock): `paused` while one of its
-- children is paused (an inquiry waiting, or a child workflow that waits on one),
-- `running` again once none is (partial index execution_paused_by_parent); such a change
-- goes to the change log. Returns whether the status changed.
WITH synced AS (
    UPDATE attune.execution e
       SET status = CASE WHEN e.status = 'running' THEN 'paused' ELSE 'running' END,
           updated_at = clock_timestamp()
     WHERE e.id = $1
       AND ((e.status = 'running'
             AND EXISTS (SELECT 1 FROM attune.execution c WHERE c.parent_id = e.id AND c.status = 'paused'))
         OR (e.status = 'paused'
             AND NOT EXISTS (SELECT 1 FROM attune.execution c WHERE c.parent_id = e.id AND c.status = 'paused')))
    RETURNING e.id, e.tenant_id, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM synced
)
INSERT INTO attune.workflow_state
    (execution_id, tenant_id, definition, tasks, variables, failed_tasks, depth, active, abort_error, items,
     wants_step, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 1, clock_timestamp())
ON CONFLICT (execution_id) DO UPDATE
   SET tasks = EXCLUDED.tasks, variables = EXCLUDED.variables, failed_tasks = EXCLUDED.failed_tasks,
       active = EXCLUDED.active, abort_error = EXCLUDED.abort_error,
       items = CASE WHEN $12 THEN EXCLUDED.items ELSE attune.workflow_state.items END,
       wants_step = EXCLUDED.wants_step, version = attune.workflow_state.version + 1, updated_at = clock_timestamp()
RETURNING EXISTS (SELECT 1 FROM synced) AS "synced!"
