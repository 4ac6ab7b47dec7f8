-- Insert a trigger of a pack, or update it in place on reload. A webhook trigger keeps
-- its key across reloads ($8 is only used for a new one).
INSERT INTO attune.trigger
    (tenant_id, pack_id, ref, description, type, parameters, payload_schema, webhook_key, webhook_secret, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $5 = 'webhook' THEN $8 END, $9, $10)
ON CONFLICT ((COALESCE(tenant_id, 0)), ref) DO UPDATE SET
    description    = EXCLUDED.description,
    type           = EXCLUDED.type,
    parameters     = EXCLUDED.parameters,
    payload_schema = EXCLUDED.payload_schema,
    webhook_key    = CASE WHEN EXCLUDED.type = 'webhook' THEN COALESCE(attune.trigger.webhook_key, $8) END,
    webhook_secret = EXCLUDED.webhook_secret,
    enabled        = EXCLUDED.enabled,
    updated_at     = now()
WHERE attune.trigger.pack_id = EXCLUDED.pack_id
