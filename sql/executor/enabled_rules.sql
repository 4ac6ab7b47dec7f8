-- Every enabled rule of an enabled action, with what the engine needs of its action (to render, admit and
-- schedule the executions it creates).
SELECT r.id, r.tenant_id, r.ref AS rule_ref, r.trigger_id, r.criteria, r.action_params,
       a.id AS action_id, a.ref AS action_ref, a.runner_type AS "runner_type: RunnerType", a.secret_params,
       a.param_schema, a.timeout_seconds, a.retry
  FROM attune.rule r
  JOIN attune.action a ON a.id = r.action_id
 WHERE r.enabled AND a.enabled
