-- Opens the inquiries of claimed executions (claim_scheduled.sql), one row each of the
-- arrays: $1 id, $2 the new status — `paused` (its inquiry is created, expiring $5
-- seconds from now) or `failed` (its parameters were refused; $9 the result naming
-- why) — and $3..$8 the checked parameters (prompt, normalised schema, ttl, default
-- response, roles and users as JSON arrays). Change-log rows (`execution.status_changed`,
-- `inquiry.created`) and audit entries; returns the inquiries created.
WITH decided AS (
    SELECT *
      FROM unnest($1::bigint[], $2::text[], $3::text[], $4::jsonb[], $5::bigint[], $6::jsonb[], $7::jsonb[],
                  $8::jsonb[], $9::jsonb[])
           AS d(id, status, prompt, schema, ttl_seconds, default_response, roles, users, result)
), moved AS (
    UPDATE attune.execution e
       SET status      = d.status,
           result      = d.result,
           started_at  = clock_timestamp(),
           finished_at = CASE WHEN d.status = 'failed' THEN clock_timestamp() END,
           updated_at  = clock_timestamp()
      FROM decided d
     WHERE e.id = d.id AND e.status = 'scheduled'
    RETURNING e.id, e.tenant_id, e.action_ref, e.status, e.result, attune.execution_change(e) AS change
), opened AS (
    INSERT INTO attune.inquiry AS i (tenant_id, execution_id, prompt, schema, default_response, expires_at, roles, users)
    SELECT m.tenant_id, m.id, d.prompt, d.schema, d.default_response,
           clock_timestamp() + make_interval(secs => d.ttl_seconds::double precision),
           ARRAY(SELECT jsonb_array_elements_text(d.roles)), ARRAY(SELECT jsonb_array_elements_text(d.users))
      FROM moved m
      JOIN decided d ON d.id = m.id
     WHERE m.status = 'paused'
     ORDER BY m.id
    RETURNING i.id, i.tenant_id, i.execution_id, attune.inquiry_change(i) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, entity_type, entity_id, event, data FROM (
        SELECT tenant_id, 'execution' AS entity_type, id AS entity_id, 'execution.status_changed' AS event,
               change AS data, id AS execution_id, 0 AS k
          FROM moved
        UNION ALL
        SELECT tenant_id, 'inquiry', id, 'inquiry.created', change, execution_id, 1 FROM opened
    ) c
    ORDER BY execution_id, k
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT tenant_id, 'service', 'executor', 'execution.failed', 'execution', id::text,
           jsonb_build_object('action', action_ref, 'error', result -> 'error')
      FROM moved WHERE status = 'failed'
    UNION ALL
    SELECT tenant_id, 'service', 'executor', 'inquiry.created', 'inquiry', id::text,
           jsonb_build_object('execution_id', execution_id)
      FROM opened
)
SELECT id AS "id!", execution_id AS "execution_id!" FROM opened
