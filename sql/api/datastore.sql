-- Live datastore items of tenant $1 in scope $2 (owner $3 for `user` items), in key
-- order: one by key ($4), or a page of those starting with $5 (all when NULL), $6 rows
-- from $7. Expired items are invisible at once (purged later).
SELECT key, value, ciphertext, key_version, encrypted, owner_id, expires_at, updated_at
  FROM attune.datastore_item
 WHERE tenant_id = $1 AND scope = $2 AND owner_id IS NOT DISTINCT FROM $3
   AND (expires_at IS NULL OR expires_at > now())
   AND ($4::text IS NULL OR key = $4)
   AND ($5::text IS NULL OR starts_with(key, $5))
 ORDER BY key
 LIMIT $6 OFFSET $7
