-- Records a batch of finished attempts (one element per execution) — only for executions
-- still running or canceling on this worker ($8) (a late result for a reaped, retried
-- elsewhere or canceled one changes nothing):
-- * a failed attempt with attempts left of an execution still `running` is scheduled again
--   (attempt + 1, run_after = now + the action's retry delay × multiplier^(attempt − 1),
--   capped at max_delay_seconds);
-- * otherwise the execution ends with the attempt's status and result — in particular one
--   in `canceling` never runs again: a cancel does not retry, it ends however the process
--   ended (`canceled`, or `failed`/`succeeded` when it ended before the cancel reached it);
-- and, either way, the attempt row, the captured output, the audit entry and the change-log row.
-- $1..$3 (id, status, result) and $4..$6 (stdout, stderr, truncated) are the batch's
-- columns, element i of each for execution $1[i]; $7 is the worker's name (audit actor),
-- $8 its id, $9 the attempts that finished (a late result of an earlier attempt of an
-- execution this worker claimed again changes nothing). The attempt row, written
-- `running` by the claim, gets the outcome. Returns whether one of the executions is a
-- workflow's task (the workflow engine is woken only then).
WITH input AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::jsonb[], $9::int[]) AS r(id, status, result, attempt)
), current AS (
    SELECT e.id, e.tenant_id, e.parent_id, e.action_ref, e.status, e.attempt, e.max_attempts, e.worker_id,
           e.started_at, a.retry,
           r.status AS outcome, r.result
      FROM attune.execution e
      JOIN input r ON r.id = e.id AND r.attempt = e.attempt
      LEFT JOIN attune.action a ON a.id = e.action_id
     WHERE e.status IN ('running', 'canceling') AND e.worker_id = $8
       -- Locked, so `status` is the current one: a cancel request committed meanwhile is
       -- seen here (and one arriving later waits for this statement).
       FOR UPDATE OF e
), decided AS (
    SELECT c.*, (c.outcome = 'failed' AND c.attempt < c.max_attempts AND c.status = 'running') AS again,
           LEAST(COALESCE((c.retry ->> 'delay_seconds')::float8, 0)
                   * power(COALESCE((c.retry ->> 'backoff_multiplier')::float8, 1), c.attempt - 1),
                 COALESCE((c.retry ->> 'max_delay_seconds')::float8, 'Infinity'::float8)) AS delay
      FROM current c
), done AS (
    UPDATE attune.execution e
       SET status       = CASE WHEN d.again THEN 'scheduled' ELSE d.outcome END,
           result       = d.result,
           attempt      = CASE WHEN d.again THEN e.attempt + 1 ELSE e.attempt END,
           run_after    = CASE WHEN d.again THEN clock_timestamp() + make_interval(secs => d.delay) ELSE e.run_after END,
           scheduled_at = CASE WHEN d.again THEN clock_timestamp() ELSE e.scheduled_at END,
           worker_id    = CASE WHEN d.again THEN NULL ELSE e.worker_id END,
           started_at   = CASE WHEN d.again THEN NULL ELSE e.started_at END,
           finished_at  = CASE WHEN d.again THEN NULL ELSE clock_timestamp() END,
           updated_at   = clock_timestamp()
      FROM decided d
     WHERE e.id = d.id
    RETURNING d.id, d.tenant_id, d.parent_id, d.action_ref, d.attempt, d.worker_id, d.started_at, d.outcome, d.again, d.delay,
              (d.result ->> 'exit_code')::int AS exit_code, d.result ->> 'error' AS error,
              attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM done ORDER BY id
), attempts AS (
    INSERT INTO attune.execution_attempt (execution_id, attempt, tenant_id, worker_id, status, exit_code, error, started_at, finished_at)
    SELECT id, attempt, tenant_id, worker_id, outcome, exit_code, error, started_at, clock_timestamp() FROM done
    ON CONFLICT (execution_id, attempt) DO UPDATE
       SET status = EXCLUDED.status, exit_code = EXCLUDED.exit_code, error = EXCLUDED.error,
           finished_at = EXCLUDED.finished_at
     WHERE attune.execution_attempt.status = 'running'
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT tenant_id, 'worker', $7,
           CASE WHEN again THEN 'execution.retried' ELSE 'execution.' || outcome END,
           'execution', id::text,
           CASE WHEN again
                THEN jsonb_build_object('action', action_ref, 'failed_attempt', attempt, 'error', error, 'retry_in_seconds', delay)
                ELSE jsonb_build_object('action', action_ref, 'exit_code', exit_code, 'error', error) END
      FROM done
), outputs AS (
    INSERT INTO attune.execution_output (execution_id, stdout, stderr, truncated)
    SELECT o.id, o.stdout, o.stderr, o.truncated
      FROM unnest($1::bigint[], $4::text[], $5::text[], $6::bool[]) AS o(id, stdout, stderr, truncated)
      JOIN done ON done.id = o.id
    ON CONFLICT (execution_id) DO UPDATE SET stdout = EXCLUDED.stdout, stderr = EXCLUDED.stderr, truncated = EXCLUDED.truncated
)
SELECT COALESCE(bool_or(parent_id IS NOT NULL), false) AS "in_workflow!" FROM done
