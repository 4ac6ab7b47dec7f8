INSERT INTO attune.rule
    (tenant_id, pack_id, ref, description, trigger_id, action_id, criteria, action_params, enabled, notify_on_trigger)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
