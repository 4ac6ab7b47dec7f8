-- A manual run (`POST /api/v1/executions`), one statement: the execution created
-- `requested` (its action $2 = $3, runner $4; parameters admitted, secret ones masked in $5
-- and sealed in $6; requested by identity $7, NULL for an execution's own token), its
-- `execution.created` change-log row, and its `execution.requested` audit entry (actor
-- type $8, id $9, login $10). Returns the row as created; the API then schedules it in the
-- same transaction (`schedule.sql`).
WITH created AS (
    INSERT INTO attune.execution AS e
        (tenant_id, action_id, action_ref, runner_type, parameters, secret_params, requested_by)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    RETURNING e.id, e.tenant_id, e.action_ref, e.parameters, e.attempt, e.max_attempts, e.created_at,
              attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.created', change FROM created
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, actor_login, action, entity_type, entity_id, data)
    SELECT tenant_id, $8, $9, $10, 'execution.requested', 'execution', id::text,
           jsonb_build_object('action', action_ref)
      FROM created
)
SELECT id AS "id!", parameters AS "parameters!", attempt AS "attempt!", max_attempts AS "max_attempts!",
       created_at AS "created_at!"
  FROM created
