-- The scheduler's claim: requested executions in arrival order (partial index
-- execution_requested (id) WHERE status = 'requested'), with their action's schema and
-- timeout (`preset_timeout`: one set when the execution was made — a workflow task's own
-- timeout_seconds — wins over the action's).
SELECT e.id, e.action_id, e.action_ref, e.runner_type AS "runner_type: RunnerType", e.parameters, e.secret_params,
       a.param_schema, a.enabled AS action_enabled, COALESCE(a.secret_params, '{}') AS "secret_names!", a.timeout_seconds AS action_timeout,
       e.timeout_seconds AS preset_timeout, a.retry
  FROM attune.execution e
  LEFT JOIN attune.action a ON a.id = e.action_id
 WHERE e.id IN (SELECT id FROM attune.execution
                 WHERE status = 'requested'
                 ORDER BY id
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
 ORDER BY e.id
