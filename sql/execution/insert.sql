-- New executions in `requested`, one row per array element (manual runs; workflow tasks later).
INSERT INTO attune.execution
    (tenant_id, action_id, action_ref, runner_type, parameters, secret_params,
     enforcement_id, rule_id, rule_ref, requested_by, parent_id)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::bytea[],
                     $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[])
RETURNING id
