-- Workers that stopped heart-beating are lost; what they were running fails with
-- failure_reason "worker_lost" (retries, when they exist, will re-schedule instead).
WITH lost AS (
    UPDATE attune.worker
       SET status = 'lost', stopped_at = clock_timestamp()
     WHERE status IN ('active', 'draining') AND heartbeat_at < clock_timestamp() - make_interval(secs => $1)
    RETURNING id, name
), failed AS (
    UPDATE attune.execution e
       SET status = 'failed', finished_at = clock_timestamp(), updated_at = clock_timestamp(),
           result = jsonb_build_object('exit_code', NULL, 'output', NULL, 'truncated', false, 'failure_reason', 'worker_lost',
                                       'error', format('worker %s stopped heart-beating while running this execution', lost.name))
      FROM lost
     WHERE e.worker_id = lost.id AND e.status IN ('running', 'canceling')
    RETURNING e.id, e.tenant_id, e.action_ref, lost.name
)
INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
SELECT tenant_id, 'service', 'executor', 'execution.failed', 'execution', id::text,
       jsonb_build_object('action', action_ref, 'failure_reason', 'worker_lost', 'worker', name)
  FROM failed
RETURNING entity_id
