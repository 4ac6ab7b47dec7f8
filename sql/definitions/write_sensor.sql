-- Writes one sensor of pack $2 (tenant $1; NULL for a system pack), updating the
-- definition of the same ref in place (keeping its id), and returns its id; nothing is
-- returned when that ref belongs to another pack.
INSERT INTO attune.sensor
    (tenant_id, pack_id, ref, description, runner_type, entry_point, poll_interval, trigger_id, config, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
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
RETURNING id
