-- Rotation: one batch of datastore items re-sealed under key version $4. A compare-and-swap
-- on the old ciphertext: an item rewritten since it was read (by the API, under the
-- current key) keeps what its writer wrote. No row lock is held while values are re-sealed.
UPDATE attune.datastore_item AS d
   SET ciphertext = r.new_ciphertext, key_version = $4
  FROM unnest($1::bigint[], $2::bytea[], $3::bytea[]) AS r (id, old_ciphertext, new_ciphertext)
 WHERE d.id = r.id AND d.ciphertext = r.old_ciphertext
