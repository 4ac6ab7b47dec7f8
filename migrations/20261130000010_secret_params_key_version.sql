-- Sealed secret parameters say which key sealed them: a 6-byte header, 0xA7 0x01 then the
-- key version as a big-endian u32, before nonce || ciphertext (attune_core::keyring).
-- Every blob written before this migration was sealed under version 1, without it.
UPDATE attune.execution
   SET secret_params = '\xa70100000001'::bytea || secret_params
 WHERE secret_params IS NOT NULL;
