-- Workers that stopped heart-beating are lost. What they were running is scheduled again
-- when its retry policy has attempts left, else fails with failure_reason "worker_lost".
WITH lost AS (
    UPDATE attune.worker
       SET status = 'lost', stopped_at = clock_timestamp()
     WHERE status IN ('active', 'draining') AND heartbeat_at < clock_timestamp() - make_interval(secs => $1)
    RETURNING id, name
), handled AS (
    UPDATE attune.execution e
       SET status       = CASE WHEN e.attempt < e.max_attempts THEN 'scheduled' ELSE 'failed' END,
           attempt      = CASE WHEN e.attempt < e.max_attempts THEN e.attempt + 1 ELSE e.attempt END,
           run_after    = clock_timestamp(),
           worker_id    = CASE WHEN e.attempt < e.max_attempts THEN NULL ELSE e.worker_id END,
           started_at   = CASE WHEN e.attempt < e.max_attempts THEN NULL ELSE e.started_at END,
           finished_at  = CASE WHEN e.attempt < e.max_attempts THEN NULL ELSE clock_timestamp() END,
           updated_at   = clock_timestamp(),
           result = jsonb_build_object('exit_code', NULL, 'output', NULL, 'truncated', false, 'failure_reason', 'worker_lost',
                                       'error', format('worker %s stopped heart-beating while running this execution', lost.name))
      FROM lost
     WHERE e.worker_id = lost.id AND e.status IN ('running', 'canceling')
    RETURNING e.id, e.tenant_id, e.action_ref, e.status, lost.name
)
INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
SELECT tenant_id, 'service', 'executor', CASE WHEN status = 'scheduled' THEN 'execution.retried' ELSE 'execution.failed' END,
       'execution', id::text, jsonb_build_object('action', action_ref, 'failure_reason', 'worker_lost', 'worker', name)
  FROM handled
RETURNING entity_id
