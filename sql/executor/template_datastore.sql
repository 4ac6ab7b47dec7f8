-- The datastore items templates read (`datastore.KEY`, `secret.KEY`), for a whole batch in
-- one round trip: the tenant-scoped, unexpired items named by the pairs (tenant $1[i],
-- key $2[i]); and, for each tenant in $3 — one whose templates read keys they do not name,
-- like `datastore[name]` — its first $4 items by key.
-- `COALESCE(owner_id, 0) = 0` follows from scope 'tenant' (a CHECK) but is spelled out so
-- both parts walk the unique index datastore_item_key (tenant_id, scope, COALESCE(owner_id, 0), key).
-- A pair also covered by a tenant of $3 comes back twice; the reader keeps one.
SELECT d.tenant_id AS "tenant_id!", d.key AS "key!", d.value, d.ciphertext, d.key_version
  FROM unnest($1::bigint[], $2::text[]) AS w(tenant_id, key)
  JOIN attune.datastore_item d
    ON d.tenant_id = w.tenant_id AND d.scope = 'tenant' AND COALESCE(d.owner_id, 0) = 0 AND d.key = w.key
 WHERE d.expires_at IS NULL OR d.expires_at > now()
UNION ALL
SELECT d.tenant_id, d.key, d.value, d.ciphertext, d.key_version
  FROM unnest($3::bigint[]) AS w(tenant_id)
 CROSS JOIN LATERAL (
        SELECT i.tenant_id, i.key, i.value, i.ciphertext, i.key_version
          FROM attune.datastore_item i
         WHERE i.tenant_id = w.tenant_id AND i.scope = 'tenant' AND COALESCE(i.owner_id, 0) = 0
           AND (i.expires_at IS NULL OR i.expires_at > now())
         ORDER BY i.key
         LIMIT $4) d
