-- Encrypted datastore values say which key sealed them (key rotation re-seals under a new
-- version; a value of an unknown version fails naming it, never decrypts to garbage).
-- The item's identity (tenant, scope, owner, key) is the ciphertext's associated data,
-- so a ciphertext copied onto another row does not decrypt.
ALTER TABLE attune.datastore_item ADD COLUMN key_version integer;
ALTER TABLE attune.datastore_item ADD CONSTRAINT datastore_item_key_version
    CHECK (encrypted = (key_version IS NOT NULL));
