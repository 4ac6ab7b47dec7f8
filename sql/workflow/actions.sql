-- The actions a workflow's tasks run, as its tenant ($1) resolves refs ($2): its own,
-- else a system pack's — with what admitting their executions needs (schema, enabled,
-- timeout, retry), so the engine inserts its tasks already admitted.
SELECT DISTINCT ON (ref) id, ref AS "action_ref!", runner_type AS "runner_type: RunnerType",
       COALESCE(secret_params, '{}') AS "secret_names!", param_schema, enabled, timeout_seconds, retry
  FROM attune.action
 WHERE ref = ANY($2) AND (tenant_id = $1 OR tenant_id IS NULL)
 ORDER BY ref, tenant_id NULLS LAST
