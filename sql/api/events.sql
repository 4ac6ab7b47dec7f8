-- The tenant's ($1) events, newest first: one by id ($2), or a page of trigger ref $3's
-- (any trigger when NULL), $4 rows from $5.
SELECT id, trigger_ref, trigger_id, payload, source, created_at, processed_at
  FROM attune.event
 WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id = $2) AND ($3::text IS NULL OR trigger_ref = $3)
 ORDER BY id DESC
 LIMIT $4 OFFSET $5
