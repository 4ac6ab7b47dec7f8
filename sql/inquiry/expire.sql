-- Expires up to $1 pending inquiries past their expires_at (partial index
-- inquiry_pending_expiry), oldest first, skipping any being answered at this moment (an
-- answer and the expiry never both win: both lock the inquiry row). The inquiry becomes
-- `expired`; its execution, if it still waits, `succeeded` with the default response as
-- result.output — or `failed` ("inquiry_expired") when there is none. Change-log rows
-- (`inquiry.expired`, `execution.status_changed`) and audit entries; returns how many.
WITH due AS (
    SELECT id FROM attune.inquiry
     WHERE status = 'pending' AND expires_at <= now()
     ORDER BY expires_at
     LIMIT $1
       FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE attune.inquiry i
       SET status = 'expired'
      FROM due
     WHERE i.id = due.id
    RETURNING i.id, i.tenant_id, i.execution_id, i.expires_at,
              NULLIF(i.default_response, 'null'::jsonb) AS default_response, attune.inquiry_change(i) AS change
), ended AS (
    UPDATE attune.execution e
       SET status      = CASE WHEN x.default_response IS NULL THEN 'failed' ELSE 'succeeded' END,
           result      = jsonb_build_object('exit_code', NULL, 'output', x.default_response, 'truncated', false,
                                            'error', CASE WHEN x.default_response IS NULL THEN
                                                format('inquiry %s expired at %s with no response and no default_response',
                                                       x.id, x.expires_at) END)
                         || CASE WHEN x.default_response IS NULL
                                 THEN jsonb_build_object('failure_reason', 'inquiry_expired') ELSE '{}'::jsonb END,
           finished_at = clock_timestamp(),
           updated_at  = clock_timestamp()
      FROM expired x
     WHERE e.id = x.execution_id AND e.status = 'paused'
    RETURNING e.id, e.tenant_id, e.action_ref, e.status, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, entity_type, entity_id, event, data FROM (
        SELECT tenant_id, 'inquiry' AS entity_type, id AS entity_id, 'inquiry.expired' AS event, change AS data,
               execution_id, 0 AS k
          FROM expired
        UNION ALL
        SELECT tenant_id, 'execution', id, 'execution.status_changed', change, id, 1 FROM ended
    ) c
    ORDER BY execution_id, k
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT tenant_id, 'service', 'executor', 'inquiry.expired', 'inquiry', id::text,
           jsonb_build_object('execution_id', execution_id, 'default_used', default_response IS NOT NULL)
      FROM expired
)
SELECT count(*) AS "expired!" FROM expired
