INSERT INTO attune.sensor
    (tenant_id, pack_id, ref, description, runner_type, entry_point, poll_interval, trigger_id, config, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
