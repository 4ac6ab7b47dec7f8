-- Ends up to $1 inquiry executions whose cancel was asked for (`canceling`: a cancel of
-- the execution or of its workflow): the execution `canceled`, its inquiry, if still
-- pending, `canceled` (nobody can answer it any more). The inquiry rows are locked first,
-- as an answer locks them (respond.sql), so the two never deadlock; an inquiry being
-- answered right now is skipped and its execution taken in a later round. Change-log
-- rows; returns how many executions ended.
WITH withdrawn AS (
    UPDATE attune.inquiry i
       SET status = 'canceled'
     WHERE i.id IN (SELECT q.id FROM attune.inquiry q
                      JOIN attune.execution e ON e.id = q.execution_id
                     WHERE q.status = 'pending' AND e.status = 'canceling' AND e.runner_type = 'inquiry'
                     ORDER BY q.id
                     LIMIT $1
                       FOR UPDATE OF q SKIP LOCKED)
    RETURNING i.id, i.tenant_id, i.execution_id, attune.inquiry_change(i) AS change
), ended AS (
    UPDATE attune.execution e
       SET status      = 'canceled',
           result      = jsonb_build_object('exit_code', NULL, 'output', NULL, 'truncated', false,
                                            'error', 'canceled while waiting for a response', 'failure_reason', 'canceled'),
           finished_at = clock_timestamp(),
           updated_at  = clock_timestamp()
     WHERE e.status = 'canceling' AND e.runner_type = 'inquiry'
       AND (e.id IN (SELECT execution_id FROM withdrawn)
            OR NOT EXISTS (SELECT 1 FROM attune.inquiry q WHERE q.execution_id = e.id AND q.status = 'pending'))
    RETURNING e.id, e.tenant_id, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, entity_type, entity_id, event, data FROM (
        SELECT tenant_id, 'inquiry' AS entity_type, id AS entity_id, 'inquiry.canceled' AS event, change AS data,
               execution_id, 0 AS k
          FROM withdrawn
        UNION ALL
        SELECT tenant_id, 'execution', id, 'execution.status_changed', change, id, 1 FROM ended
    ) c
    ORDER BY execution_id, k
)
SELECT count(*) AS "ended!" FROM ended
