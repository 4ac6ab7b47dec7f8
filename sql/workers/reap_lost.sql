-- Lost workers and what they held. A worker is lost when it is still `active`/`draining`
-- and either its liveness session is gone (`session_lock` rows: the advisory lock
-- attune.worker_lock_key(id) is held by no session — the process died, or PostgreSQL
-- ended its idle or unreachable session), or it has not heart-beaten for $1 seconds (rows
-- of workers without a liveness session, and a hung process whose session lives on).
-- $2: only workers of this name (a worker registering reaps its own earlier
-- incarnations), NULL for every worker; $3: never this worker (the one registering).
--
-- What a lost worker was running is scheduled again when its retry policy has attempts
-- left, else fails with failure_reason "worker_lost"; what it was canceling ends `canceled`
-- (a cancel never retries). Its attempts still `running` are closed as `lost`; each move
-- is audited and written to the change log. Returns
-- the ids of the executions it moved on.
WITH lost AS (
    UPDATE attune.worker w
       SET status = 'lost', stopped_at = clock_timestamp()
     WHERE w.status IN ('active', 'draining')
       AND ($2::text IS NULL OR w.name = $2)
       AND ($3::bigint IS NULL OR w.id <> $3)
       AND (w.heartbeat_at < clock_timestamp() - make_interval(secs => $1)
            OR (w.session_lock AND NOT attune.worker_session_alive(w.id)))
    RETURNING w.id, w.name
), gone AS (
    -- The workers lost now, and any lost or stopped earlier that still hold executions (a
    -- claim that committed after the round that marked its worker lost): swept as well.
    SELECT id, name FROM lost
    UNION ALL
    SELECT w.id, w.name FROM attune.worker w
     WHERE w.status IN ('lost', 'stopped') AND ($2::text IS NULL OR w.name = $2)
       AND EXISTS (SELECT 1 FROM attune.execution e WHERE e.worker_id = w.id AND e.status IN ('running', 'canceling'))
), attempts AS (
    UPDATE attune.execution_attempt a
       SET status = 'lost', finished_at = clock_timestamp(),
           error = format('worker %s was lost while this attempt ran', gone.name)
      FROM gone
     WHERE a.worker_id = gone.id AND a.status = 'running'
), handled AS (
    -- Every expression sees the row as it was (its old status and attempt). Only a running
    -- one with attempts left goes again.
    UPDATE attune.execution e
       SET status       = CASE WHEN (e.status = 'running' AND e.attempt < e.max_attempts) THEN 'scheduled'
                               WHEN e.status = 'canceling' THEN 'canceled'
                               ELSE 'failed' END,
           attempt      = CASE WHEN (e.status = 'running' AND e.attempt < e.max_attempts) THEN e.attempt + 1 ELSE e.attempt END,
           run_after    = clock_timestamp(),
           worker_id    = CASE WHEN (e.status = 'running' AND e.attempt < e.max_attempts) THEN NULL ELSE e.worker_id END,
           started_at   = CASE WHEN (e.status = 'running' AND e.attempt < e.max_attempts) THEN NULL ELSE e.started_at END,
           finished_at  = CASE WHEN (e.status = 'running' AND e.attempt < e.max_attempts) THEN NULL ELSE clock_timestamp() END,
           updated_at   = clock_timestamp(),
           result = jsonb_build_object('exit_code', NULL, 'output', NULL, 'truncated', false, 'failure_reason', 'worker_lost',
                                       'error', format('worker %s was lost while %s this execution', gone.name,
                                                       CASE WHEN e.status = 'canceling' THEN 'canceling' ELSE 'running' END))
      FROM gone
     WHERE e.worker_id = gone.id AND e.status IN ('running', 'canceling')
    RETURNING e.id, e.tenant_id, e.action_ref, e.status, gone.name, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.status_changed', change FROM handled ORDER BY id
)
INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
SELECT tenant_id, 'service', 'executor',
       CASE status WHEN 'scheduled' THEN 'execution.retried' WHEN 'canceled' THEN 'execution.canceled' ELSE 'execution.failed' END,
       'execution', id::text, jsonb_build_object('action', action_ref, 'failure_reason', 'worker_lost', 'worker', name)
  FROM handled
RETURNING entity_id AS "entity_id!"
