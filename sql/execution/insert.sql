-- New executions in `requested`, one row per array element (manual runs; workflow tasks
-- later), each with its `execution.created` change-log row. Returns the ids in order.
WITH created AS (
    INSERT INTO attune.execution AS e
        (tenant_id, action_id, action_ref, runner_type, parameters, secret_params,
         enforcement_id, rule_id, rule_ref, requested_by, parent_id)
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::bytea[],
                         $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[])
    RETURNING e.id, e.tenant_id, attune.execution_change(e) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'execution', id, 'execution.created', change FROM created ORDER BY id
)
SELECT id AS "id!" FROM created ORDER BY id
