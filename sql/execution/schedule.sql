-- Moves a batch of requested executions on — `scheduled` (valid parameters, defaults
-- applied) or `failed` (the reason in result.error) — and records it in the audit log and
-- the change log.
WITH decided AS (
    UPDATE attune.execution e
       SET status          = r.status,
           parameters      = r.parameters,
           secret_params   = r.secret_params,
           result          = r.result,
           max_attempts    = r.max_attempts,
           timeout_seconds = r.timeout_seconds,
           scheduled_at    = CASE WHEN r.status = 'scheduled' THEN clock_timestamp() END,
           finished_at     = CASE WHEN r.status = 'failed' THEN clock_timestamp() END,
           updated_at      = clock_timestamp()
      FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $4::bytea[], $5::jsonb[], $6::int[], $7::int[])
           AS r(id, status, parameters, secret_params, result, max_attempts, timeout_seconds)
     WHERE e.id = r.id
    RETURNING e.id, e.tenant_id, e.action_ref, r.status, r.result, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM decided ORDER BY id
)
INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
SELECT tenant_id, 'service', 'executor', 'execution.' || status, 'execution', id::text,
       CASE WHEN result IS NULL THEN jsonb_build_object('action', action_ref)
            ELSE jsonb_build_object('action', action_ref, 'error', result -> 'error') END
  FROM decided
