INSERT INTO attune.rule
    (tenant_id, pack_id, ref, description, trigger_id, action_id, criteria, action_params, enabled, notify_on_trigger)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT ((COALESCE(tenant_id, 0)), ref) DO UPDATE SET
    description       = EXCLUDED.description,
    trigger_id        = EXCLUDED.trigger_id,
    action_id         = EXCLUDED.action_id,
    criteria          = EXCLUDED.criteria,
    action_params     = EXCLUDED.action_params,
    enabled           = EXCLUDED.enabled,
    notify_on_trigger = EXCLUDED.notify_on_trigger,
    updated_at        = now()
WHERE attune.rule.pack_id = EXCLUDED.pack_id
