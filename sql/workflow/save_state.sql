-- Writes a workflow's state after a step, and keeps the workflow's status in step with its
-- children (the caller holds its lock): `paused` while one of its children is paused (an
-- inquiry waiting, or a child workflow that waits on one), `running` again once none is
-- (partial index execution_paused_by_parent); such a change goes to the change log.
-- At the workflow's start ($3, its definition, given) the state row is created whole; at
-- a later step ($3 NULL) only what the step changed is sent: $4 the task states that
-- changed (merged into the stored ones: a task's state is never removed), $10 the
-- with-items lists when they changed (NULL: kept). Returns whether the status changed and
-- the state's new version (the engine caches the state it saved under that version).
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
), stepped AS (
    UPDATE attune.workflow_state ws
       SET tasks = ws.tasks || $4::jsonb, variables = $5, failed_tasks = $6, active = $8, abort_error = $9,
           items = COALESCE($10::jsonb, ws.items), wants_step = $11,
           version = ws.version + 1, updated_at = clock_timestamp()
     WHERE ws.execution_id = $1 AND $3::jsonb IS NULL
    RETURNING ws.version
), started AS (
    INSERT INTO attune.workflow_state
        (execution_id, tenant_id, definition, tasks, variables, failed_tasks, depth, active, abort_error, items,
         wants_step, version, updated_at)
    SELECT $1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, $8, $9, COALESCE($10::jsonb, '{}'), $11, 1, clock_timestamp()
     WHERE $3::jsonb IS NOT NULL
    RETURNING version
)
SELECT EXISTS (SELECT 1 FROM synced) AS "synced!",
       COALESCE((SELECT version FROM stepped), (SELECT version FROM started)) AS "version!"
