-- Writes one trigger of pack $2 (tenant $1; NULL for a system pack) and returns its id.
-- $11 false (create): an existing ref is left alone and nothing is returned (the API's 409).
-- $11 true (upsert: pack reloads, PATCH): the definition of the same ref is updated in
-- place, keeping its id; nothing is returned when that ref belongs to another pack.
-- $8 is a fresh webhook key, kept only for webhook triggers (and only when it has none).
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
WHERE attune.trigger.pack_id = EXCLUDED.pack_id AND $11::bool
RETURNING id
