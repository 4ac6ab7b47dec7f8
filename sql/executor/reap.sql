-- Workers that stopped heart-beating are lost. What they were running is scheduled again
-- when its retry policy has attempts left, else fails with failure_reason "worker_lost".
-- What they were canceling ends `canceled` (still naming worker_lost): a cancel never
-- retries, whatever attempts are left.
WITH lost AS (
    UPDATE attune.worker
       SET status = 'lost', stopped_at = clock_timestamp()
     WHERE status IN ('active', 'draining') AND heartbeat_at < clock_timestamp() - make_interval(secs => $1)
    RETURNING id, name
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
                                       'error', format('worker %s stopped heart-beating while %s this execution', lost.name,
                                                       CASE WHEN e.status = 'canceling' THEN 'canceling' ELSE 'running' END))
      FROM lost
     WHERE e.worker_id = lost.id AND e.status IN ('running', 'canceling')
    RETURNING e.id, e.tenant_id, e.action_ref, e.status, lost.name
)
INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
SELECT tenant_id, 'service', 'executor',
       CASE status WHEN 'scheduled' THEN 'execution.retried' WHEN 'canceled' THEN 'execution.canceled' ELSE 'execution.failed' END,
       'execution', id::text, jsonb_build_object('action', action_ref, 'failure_reason', 'worker_lost', 'worker', name)
  FROM handled
RETURNING entity_id AS "entity_id!"
