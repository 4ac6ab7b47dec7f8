-- Packs visible to tenant $1 (its own and the system packs), in ref order: one by id ($2)
-- or ref ($3; the tenant's own before a system pack), or a page of $4 rows from $5.
SELECT id, ref AS "pack_ref", label, version, description, tenant_id IS NULL AS "system!", path,
       created_at, updated_at
  FROM attune.pack
 WHERE (tenant_id = $1 OR tenant_id IS NULL)
   AND ($2::bigint IS NULL OR id = $2) AND ($3::text IS NULL OR ref = $3)
 ORDER BY ref, tenant_id NULLS LAST, id
 LIMIT $4 OFFSET $5
