-- Appended to insert_action.sql for (re)loading packs: update the definition in place.
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
    updated_at      = now()
WHERE attune.action.pack_id = EXCLUDED.pack_id
