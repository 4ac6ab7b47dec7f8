-- Insert a trigger. $8 is a fresh webhook key, kept only for webhook triggers.
INSERT INTO attune.trigger
    (tenant_id, pack_id, ref, description, type, parameters, payload_schema, webhook_key, webhook_secret, enabled)
VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $5 = 'webhook' THEN $8 END, $9, $10)
