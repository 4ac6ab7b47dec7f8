-- Writes one rule of pack $2 (tenant $1; NULL for a system pack) and returns its id.
-- $11 false (create): an existing ref is left alone and nothing is returned (the API's 409).
-- $11 true (upsert: pack reloads, PATCH): the definition of the same ref is updated in
-- place, keeping its id; nothing is returned when that ref belongs to another pack.
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
WHERE attune.rule.pack_id = EXCLUDED.pack_id AND $11::bool
RETURNING id
