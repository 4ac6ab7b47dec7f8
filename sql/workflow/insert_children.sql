-- A workflow's new task executions (one per array element, ids in array order), already
-- admitted by the engine with the scheduler's rules: `scheduled` for the workers (or
-- `failed`, the reason in $13, which the engine takes in at its next step), each with its
-- task name, with-items position, earliest start (a retry's delay), attempts and timeout
-- (the task's timeout_seconds, else the action's). Their audit entries and their
-- `execution.created` change-log rows.
WITH created AS (
    INSERT INTO attune.execution AS e
        (tenant_id, parent_id, action_id, action_ref, runner_type, parameters, secret_params,
         workflow_task, item_index, run_after, status, result, max_attempts, timeout_seconds,
         scheduled_at, finished_at, requested_by)
    SELECT r.tenant_id, r.parent_id, r.action_id, r.action_ref,
           -- A task of an action with `with_items` (not itself an item) is a with-items
           -- parent, run by the workflow engine.
           CASE WHEN r.item_index IS NULL AND a.with_items IS NOT NULL THEN 'workflow' ELSE r.runner_type END,
           r.parameters, r.secret_params,
           r.task, r.item_index, clock_timestamp() + make_interval(secs => r.delay), r.status, r.result,
           r.max_attempts, r.timeout,
           CASE WHEN r.status = 'scheduled' THEN clock_timestamp() END,
           CASE WHEN r.status = 'failed' THEN clock_timestamp() END,
           (SELECT p.requested_by FROM attune.execution p WHERE p.id = r.parent_id)
      FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::bytea[],
                  $8::text[], $9::int[], $10::float8[], $11::int[], $12::text[], $13::jsonb[], $14::int[])
           WITH ORDINALITY
           AS r(tenant_id, parent_id, action_id, action_ref, runner_type, parameters, secret_params, task, item_index,
                delay, timeout, status, result, max_attempts, n)
      LEFT JOIN attune.action a ON a.id = r.action_id
     ORDER BY r.n
    RETURNING e.id, e.tenant_id, e.action_ref, e.status, e.result, attune.execution_change(e) AS change
), audited AS (
    INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, action, entity_type, entity_id, data)
    SELECT tenant_id, 'service', 'executor', 'execution.' || status, 'execution', id::text,
           CASE WHEN result IS NULL THEN jsonb_build_object('action', action_ref)
                ELSE jsonb_build_object('action', action_ref, 'error', result -> 'error') END
      FROM created
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.created', change FROM created ORDER BY id
)
SELECT count(*) AS "created!" FROM created
