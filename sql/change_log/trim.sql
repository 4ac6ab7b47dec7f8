-- Retention: deletes up to $2 change-log rows older than $1 seconds, oldest first (the
-- primary key's order is their age's, near enough). Run by one executor at a time.
DELETE FROM attune.change_log
 WHERE id IN (SELECT id FROM attune.change_log
               WHERE created_at < now() - make_interval(secs => $1)
               ORDER BY id
               LIMIT $2)
