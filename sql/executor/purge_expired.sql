-- Purges up to $1 expired datastore items (the oldest expiries first; partial index
-- datastore_item_expiry). Readers already ignore them; this only reclaims the rows.
DELETE FROM attune.datastore_item
 WHERE id IN (SELECT id FROM attune.datastore_item
               WHERE expires_at <= now()
               ORDER BY expires_at
               LIMIT $1
                 FOR UPDATE SKIP LOCKED)
