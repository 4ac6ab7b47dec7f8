-- Rotation: the next batch of encrypted datastore items not sealed under the current key
-- version $1, after id $2, in id order. Keyset pagination: one pass visits each row once,
-- so an item that cannot be opened is reported and passed over, not retried forever.
SELECT id, tenant_id, scope, owner_id, key,
       ciphertext AS "ciphertext!", key_version AS "key_version!"
  FROM attune.datastore_item
 WHERE encrypted AND key_version <> $1 AND id > $2
 ORDER BY id
 LIMIT $3
