-- Appended to insert_sensor.sql for (re)loading packs: update the definition in place.
ON CONFLICT ((COALESCE(tenant_id, 0)), ref) DO UPDATE SET
    description   = EXCLUDED.description,
    runner_type   = EXCLUDED.runner_type,
    entry_point   = EXCLUDED.entry_point,
    poll_interval = EXCLUDED.poll_interval,
    trigger_id    = EXCLUDED.trigger_id,
    config        = EXCLUDED.config,
    enabled       = EXCLUDED.enabled,
    updated_at    = now()
WHERE attune.sensor.pack_id = EXCLUDED.pack_id
