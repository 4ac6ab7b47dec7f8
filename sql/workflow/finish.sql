-- Ends workflow $1 (still running or canceling) with status $2 and result $3, with its
-- audit entry and change-log row.
WITH done AS (
    UPDATE attune.execution e
       SET status = $2, result = $3, finished_at = clock_timestamp(), updated_at = clock_timestamp(),
           started_at = COALESCE(e.started_at, clock_timestamp())
     WHERE e.id = $1 AND e.status IN ('scheduled', 'running', 'paused', 'canceling')
    RETURNING e.id, e.tenant_id, e.action_ref, e.status, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM done
)
INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
SELECT tenant_id, 'service', 'executor', 'execution.' || status, 'execution', id::text,
       jsonb_build_object('action', action_ref, 'error', $3::jsonb -> 'error')
  FROM done
