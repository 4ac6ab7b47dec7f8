-- Triggers visible to tenant $1, in ref order: one by id ($2) or ref ($3), or a page
-- filtered by pack ($4) and type ($5), $6 rows from $7. The secret itself never leaves;
-- webhook_url and webhook_signed are filled in by the API (it knows its public URL).
SELECT id, ref AS "trigger_ref", split_part(ref, '.', 1) AS "pack!", description,
       type AS "trigger_type: TriggerType", parameters, payload_schema, webhook_key,
       webhook_secret IS NOT NULL AS "has_secret!", enabled, tenant_id IS NULL AS "system!", created_at, updated_at,
       NULL::text AS "webhook_url?", NULL::boolean AS "webhook_signed?"
  FROM attune.trigger
 WHERE (tenant_id = $1 OR tenant_id IS NULL)
   AND ($2::bigint IS NULL OR id = $2) AND ($3::text IS NULL OR ref = $3)
   AND ($4::text IS NULL OR split_part(ref, '.', 1) = $4) AND ($5::text IS NULL OR type = $5)
 ORDER BY ref, tenant_id NULLS LAST, id
 LIMIT $6 OFFSET $7
