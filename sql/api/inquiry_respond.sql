-- Records answer $3 of identity $4 to inquiry $1 (pending, locked by inquiry_lock.sql)
-- and ends its execution $2 `succeeded` with the answer as result.output — only if the
-- execution still waits (`paused`): one being canceled takes no answer, and then nothing
-- is written. Change-log rows (`inquiry.responded`, `execution.status_changed`); returns
-- 1 when the answer was recorded, 0 otherwise.
WITH ended AS (
    UPDATE attune.execution e
       SET status      = 'succeeded',
           result      = jsonb_build_object('exit_code', NULL, 'output', $3::jsonb, 'error', NULL, 'truncated', false),
           finished_at = clock_timestamp(),
           updated_at  = clock_timestamp()
     WHERE e.id = $2 AND e.status = 'paused'
    RETURNING e.id, e.tenant_id, attune.execution_change(e) AS change
), answered AS (
    UPDATE attune.inquiry i
       SET status = 'responded', response = $3, responded_by = $4, responded_at = clock_timestamp()
      FROM ended
     WHERE i.id = $1 AND i.status = 'pending'
    RETURNING i.id, i.tenant_id, attune.inquiry_change(i) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, entity_type, entity_id, event, data FROM (
        SELECT tenant_id, 'inquiry' AS entity_type, id AS entity_id, 'inquiry.responded' AS event, change AS data, 0 AS k
          FROM answered
        UNION ALL
        SELECT tenant_id, 'execution', id, 'execution.status_changed', change, 1 FROM ended
    ) c
    ORDER BY k
)
SELECT count(*) AS "answered!" FROM answered
