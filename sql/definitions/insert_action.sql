-- Insert an action.
INSERT INTO attune.action
    (tenant_id, pack_id, ref, description, runner_type, entry_point, command, code, parameters,
     param_schema, secret_params, output_schema, timeout_seconds, retry, concurrency, secrets,
     workflow, http, container, with_items, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
