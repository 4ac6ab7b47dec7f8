-- Cancels the unfinished children of workflow $1 (an abort or a cancel of the workflow):
-- not running yet -> canceled at once; running or paused -> canceling (their worker, or
-- for a child workflow the engine, ends them). Change-log rows; returns how many changed.
WITH changed AS (
    UPDATE attune.execution e
       SET status      = CASE WHEN status IN ('requested', 'scheduled') THEN 'canceled' ELSE 'canceling' END,
           finished_at = CASE WHEN status IN ('requested', 'scheduled') THEN clock_timestamp() ELSE finished_at END,
           result      = CASE WHEN status IN ('requested', 'scheduled')
                              THEN jsonb_build_object('exit_code', NULL, 'output', NULL, 'truncated', false,
                                                      'error', $2::text, 'failure_reason', 'canceled')
                              ELSE result END,
           updated_at  = clock_timestamp()
     WHERE parent_id = $1 AND status IN ('requested', 'scheduled', 'running', 'paused')
    RETURNING e.id, e.tenant_id, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM changed ORDER BY id
)
SELECT count(*) AS "changed!" FROM changed
