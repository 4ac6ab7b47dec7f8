-- The workflow engine's start claim: up to $1 scheduled workflow executions (partial
-- index execution_workflow_scheduled), marked running by this executor, with the
-- `execution.started` audit entry and the change-log row. Returns what starting them
-- needs: the action's definition (or its action-level with_items) and the depth of the
-- workflow that runs this one as a task (NULL at the top).
WITH picked AS (
    SELECT id FROM attune.execution
     WHERE status = 'scheduled' AND runner_type = 'workflow' AND run_after <= now()
     ORDER BY id
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE attune.execution e
       SET status = 'running', started_at = clock_timestamp(), updated_at = clock_timestamp()
      FROM picked
     WHERE e.id = picked.id
    RETURNING e.id, e.tenant_id, e.action_id, e.action_ref, e.parameters, e.secret_params, e.parent_id,
              attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM claimed ORDER BY id
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT tenant_id, 'service', 'executor', 'execution.started', 'execution', id::text,
           jsonb_build_object('action', action_ref)
      FROM claimed
)
SELECT c.id AS "id!", c.tenant_id AS "tenant_id!", c.action_ref AS "action_ref!", c.parameters AS "parameters!",
       c.secret_params AS "secret_params?", c.parent_id AS "parent_id?",
       a.workflow AS "workflow?", a.with_items AS "with_items?", ws.depth AS "parent_depth?"
  FROM claimed c
  LEFT JOIN attune.action a ON a.id = c.action_id
  LEFT JOIN attune.workflow_state ws ON ws.execution_id = c.parent_id
 ORDER BY c.id
