-- Records a batch of finished attempts (one element per execution): status and result,
-- the attempt row, the captured output, and the audit entry — only for executions that
-- were still running (a late result for a reaped or canceled one changes nothing).
WITH done AS (
    UPDATE attune.execution e
       SET status = r.status, result = r.result, finished_at = clock_timestamp(), updated_at = clock_timestamp()
      FROM unnest($1::bigint[], $2::text[], $3::jsonb[]) AS r(id, status, result)
     WHERE e.id = r.id AND e.status IN ('running', 'canceling')
    RETURNING e.id, e.tenant_id, e.action_ref, e.attempt, e.worker_id, e.started_at, e.finished_at, r.status,
              (r.result ->> 'exit_code')::int AS exit_code, r.result ->> 'error' AS error
), attempts AS (
    INSERT INTO attune.execution_attempt (execution_id, attempt, worker_id, status, exit_code, error, started_at, finished_at)
    SELECT id, attempt, worker_id, status, exit_code, error, started_at, finished_at FROM done
    ON CONFLICT (execution_id, attempt) DO NOTHING
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT tenant_id, 'worker', $8, 'execution.' || status, 'execution', id::text,
           jsonb_build_object('action', action_ref, 'exit_code', exit_code, 'error', error)
      FROM done
)
INSERT INTO attune.execution_output (execution_id, stdout, stderr, truncated)
SELECT o.id, o.stdout, o.stderr, o.truncated
  FROM unnest($4::bigint[], $5::text[], $6::text[], $7::bool[]) AS o(id, stdout, stderr, truncated)
  JOIN done ON done.id = o.id
ON CONFLICT (execution_id) DO UPDATE SET stdout = EXCLUDED.stdout, stderr = EXCLUDED.stderr, truncated = EXCLUDED.truncated
