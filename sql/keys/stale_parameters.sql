-- Rotation: the next batch of executions whose secret parameters are not sealed under key
-- version $1 (bytes 3-6 of the blob's header, big-endian), after id $2, in id order
-- (keyset pagination on the primary key, as stale_items.sql).
SELECT id, secret_params AS "secret_params!"
  FROM attune.execution
 WHERE secret_params IS NOT NULL AND id > $2
   AND substring(secret_params FROM 3 FOR 4) <> int4send($1)
 ORDER BY id
 LIMIT $3
