-- Appended to insert_rule.sql for (re)loading packs: update the definition in place.
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
