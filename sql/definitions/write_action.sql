-- Writes one action of pack $2 (tenant $1; NULL for a system pack) and returns its id.
-- $22 false (create): an existing ref is left alone and nothing is returned (the API's 409).
-- $22 true (upsert: pack reloads, PATCH): the definition of the same ref is updated in
-- place, keeping its id; nothing is returned when that ref belongs to another pack.
-- $23 run_roles (NULL: every role that may run actions), $24 network.
INSERT INTO attune.action
    (tenant_id, pack_id, ref, description, runner_type, entry_point, command, code, parameters,
     param_schema, secret_params, output_schema, timeout_seconds, retry, concurrency, secrets,
     workflow, http, container, with_items, enabled, run_roles, network)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $23, $24)
ON CONFLICT ((COALESCE(tenant_id, 0)), ref) DO UPDATE SET
    description     = EXCLUDED.description,
    runner_type     = EXCLUDED.runner_type,
    entry_point     = EXCLUDED.entry_point,
    command         = EXCLUDED.command,
    code            = EXCLUDED.code,
    parameters      = EXCLUDED.parameters,
    param_schema    = EXCLUDED.param_schema,
    secret_params   = EXCLUDED.secret_params,
    output_schema   = EXCLUDED.output_schema,
    timeout_seconds = EXCLUDED.timeout_seconds,
    retry           = EXCLUDED.retry,
    concurrency     = EXCLUDED.concurrency,
    secrets         = EXCLUDED.secrets,
    workflow        = EXCLUDED.workflow,
    http            = EXCLUDED.http,
    container       = EXCLUDED.container,
    with_items      = EXCLUDED.with_items,
    enabled         = EXCLUDED.enabled,
    run_roles       = EXCLUDED.run_roles,
    network         = EXCLUDED.network,
    updated_at      = now()
WHERE attune.action.pack_id = EXCLUDED.pack_id AND $22::bool
RETURNING id
