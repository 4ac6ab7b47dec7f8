-- How many live items datastore.sql's filters match (tenant $1, scope $2, owner $3, prefix $4).
SELECT count(*) AS "count!"
  FROM attune.datastore_item
 WHERE tenant_id = $1 AND scope = $2 AND owner_id IS NOT DISTINCT FROM $3
   AND (expires_at IS NULL OR expires_at > now())
   AND ($4::text IS NULL OR starts_with(key, $4))
