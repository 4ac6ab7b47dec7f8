-- A cancel request: not running yet -> canceled at once; running (or paused) -> canceling,
-- for its worker to stop; already canceling -> unchanged (the request is repeated).
-- Returns the new status, or nothing when the execution is missing or has ended. The
-- change is written to the change log.
WITH changed AS (
    UPDATE attune.execution e
       SET status      = CASE WHEN status IN ('requested', 'scheduled') THEN 'canceled' ELSE 'canceling' END,
           finished_at = CASE WHEN status IN ('requested', 'scheduled') THEN clock_timestamp() ELSE finished_at END,
           result      = CASE WHEN status IN ('requested', 'scheduled')
                              THEN jsonb_build_object('exit_code', NULL, 'output', NULL, 'truncated', false,
                                                      'error', 'canceled before it ran', 'failure_reason', 'canceled')
                              ELSE result END,
           updated_at  = clock_timestamp()
     WHERE id = $1 AND tenant_id = $2 AND status IN ('requested', 'scheduled', 'running', 'paused', 'canceling')
    RETURNING e.id, e.tenant_id, e.status, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM changed
)
SELECT status AS "status!: ExecutionStatus" FROM changed
