-- The worker's claim, one statement and so one round trip: take up to $3 scheduled
-- executions of the runner types it runs ($2), in priority order, mark them running on
-- worker $1, record `execution.started` (actor $4), the change-log row, and each attempt's row (`running`, on
-- this worker, from now: a worker that dies takes it with it and the reaper closes it as
-- `lost`), and return what running them needs.
-- $5 NULL: executions of actions without a concurrency limit; $5 = an action id: that
-- action's (the caller holds its row lock and passes its free slots as $3).
-- The quoted column aliases tell the sqlx macros each column's nullability (! / ?) and type.
-- The ORDER BY is exactly the partial index execution_ready (priority DESC, run_after, id)
-- WHERE status = 'scheduled', so a claim never sorts the backlog.
WITH picked AS (
    SELECT id FROM attune.execution
     WHERE status = 'scheduled' AND run_after <= now() AND runner_type = ANY($2)
       -- A worker the reaper has marked lost claims nothing more.
       AND EXISTS (SELECT 1 FROM attune.worker w WHERE w.id = $1 AND w.status = 'active')
       AND CASE WHEN $5::bigint IS NULL
                THEN NOT EXISTS (SELECT 1 FROM attune.action a WHERE a.id = action_id AND a.concurrency IS NOT NULL)
                ELSE action_id = $5 END
     ORDER BY priority DESC, run_after, id
     LIMIT $3
       FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE attune.execution e
       SET status = 'running', worker_id = $1, started_at = clock_timestamp(), updated_at = clock_timestamp()
      FROM picked
     WHERE e.id = picked.id
    RETURNING e.id, e.tenant_id, e.action_id, e.action_ref, e.runner_type, e.parameters, e.secret_params,
              e.attempt, e.timeout_seconds, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM claimed ORDER BY id
), attempts AS (
    INSERT INTO attune.execution_attempt (execution_id, attempt, tenant_id, worker_id, status, started_at)
    SELECT id, attempt, tenant_id, $1, 'running', clock_timestamp() FROM claimed
    ON CONFLICT (execution_id, attempt) DO UPDATE
       SET worker_id = EXCLUDED.worker_id, status = 'running', started_at = EXCLUDED.started_at,
           exit_code = NULL, error = NULL, finished_at = NULL, pid = NULL
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT tenant_id, 'worker', $4, 'execution.started', 'execution', id::text,
           jsonb_build_object('action', action_ref, 'attempt', attempt)
      FROM claimed
)
SELECT c.id AS "id!", c.tenant_id AS "tenant_id!", c.action_ref AS "action_ref!",
       c.runner_type AS "runner_type!: RunnerType", c.parameters AS "parameters!", c.secret_params AS "secret_params?",
       c.attempt AS "attempt!", c.timeout_seconds AS "timeout_seconds?",
       a.entry_point AS "entry_point?", a.command AS "command?", a.code AS "code?",
       COALESCE(a.secret_params, '{}') AS "secret_names!", COALESCE(a.secrets, '{}') AS "secrets!",
       p.path AS "pack_path?", COALESCE(a.network, true) AS "network!",
       a.http AS "http?", a.container AS "container?", p.ref AS "pack_ref?", p.version AS "pack_version?"
  FROM claimed c
  LEFT JOIN attune.action a ON a.id = c.action_id
  LEFT JOIN attune.pack p ON p.id = a.pack_id
 ORDER BY c.id
