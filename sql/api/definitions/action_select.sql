-- Actions visible to tenant $1 (its own and the system packs'), in ref order: one by id
-- ($2) or by ref ($3; the tenant's own before a system pack's), or a page filtered by pack
-- ($4) and runner type ($5), $6 rows from $7.
SELECT id, ref AS "action_ref", split_part(ref, '.', 1) AS "pack!", description,
       runner_type AS "runner_type: RunnerType", entry_point, command, code, parameters, output_schema,
       timeout_seconds, retry, concurrency, secrets, workflow, http, container, with_items, enabled, run_roles,
       network,
       tenant_id IS NULL AS "system!", created_at, updated_at
  FROM attune.action
 WHERE (tenant_id = $1 OR tenant_id IS NULL)
   AND ($2::bigint IS NULL OR id = $2) AND ($3::text IS NULL OR ref = $3)
   AND ($4::text IS NULL OR split_part(ref, '.', 1) = $4) AND ($5::text IS NULL OR runner_type = $5)
 ORDER BY ref, tenant_id NULLS LAST, id
 LIMIT $6 OFFSET $7
