-- Appended to insert_trigger.sql for (re)loading packs: update the definition in place.
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
