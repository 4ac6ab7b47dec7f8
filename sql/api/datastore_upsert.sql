-- Creates or replaces one datastore item of tenant $1 (scope $2, owner $3 for `user`
-- items, key $4): plain value $5, or ciphertext $6 sealed under key version $9 when
-- encrypted ($7); `ttl_seconds` $8 sets when it expires (NULL: never). An expired item of
-- the same key is replaced like a live one. Returns whether it was created.
INSERT INTO attune.datastore_item AS d
    (tenant_id, scope, owner_id, key, value, ciphertext, encrypted, expires_at, key_version)
VALUES ($1, $2, $3, $4, $5, $6, $7,
        CASE WHEN $8::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $8::float8) END, $9)
ON CONFLICT (tenant_id, scope, (COALESCE(owner_id, 0)), key) DO UPDATE SET
    value       = EXCLUDED.value,
    ciphertext  = EXCLUDED.ciphertext,
    encrypted   = EXCLUDED.encrypted,
    expires_at  = EXCLUDED.expires_at,
    key_version = EXCLUDED.key_version,
    created_at  = CASE WHEN d.expires_at IS NOT NULL AND d.expires_at <= now() THEN now() ELSE d.created_at END,
    updated_at  = now()
RETURNING d.id, (xmax = 0) AS "created!", d.expires_at, d.updated_at
