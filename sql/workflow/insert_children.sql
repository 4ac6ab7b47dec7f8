-- A workflow's new task executions (one per array element), `requested` for the scheduler
-- to admit (ids in array order), each with its task name, with-items position and earliest start (a retry's
-- delay), and its `execution.created` change-log row.
WITH created AS (
    INSERT INTO attune.execution AS e
        (tenant_id, parent_id, action_id, action_ref, runner_type, parameters, secret_params,
         workflow_task, item_index, run_after, requested_by)
    SELECT r.tenant_id, r.parent_id, r.action_id, r.action_ref, r.runner_type, r.parameters, r.secret_params,
           r.task, r.item_index, clock_timestamp() + make_interval(secs => r.delay),
           (SELECT p.requested_by FROM attune.execution p WHERE p.id = r.parent_id)
      FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::bytea[],
                  $8::text[], $9::int[], $10::float8[]) WITH ORDINALITY
           AS r(tenant_id, parent_id, action_id, action_ref, runner_type, parameters, secret_params, task, item_index, delay, n)
     ORDER BY r.n
    RETURNING e.id, e.tenant_id, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.created', change FROM created ORDER BY id
)
SELECT count(*) AS "created!" FROM created
