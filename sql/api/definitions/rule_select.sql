-- Rules visible to tenant $1 with their trigger and action refs, in ref order: one by id
-- ($2) or ref ($3), or a page filtered by pack ($4), trigger ref ($5), action ref ($6) and
-- enabled ($7), $8 rows from $9.
SELECT r.id, r.ref AS "rule_ref", split_part(r.ref, '.', 1) AS "pack!", r.description, t.ref AS "trigger",
       a.ref AS "action", r.criteria, r.action_params, r.enabled, r.notify_on_trigger,
       r.tenant_id IS NULL AS "system!", r.created_at, r.updated_at
  FROM attune.rule r
  JOIN attune.trigger t ON t.id = r.trigger_id
  JOIN attune.action a ON a.id = r.action_id
 WHERE (r.tenant_id = $1 OR r.tenant_id IS NULL)
   AND ($2::bigint IS NULL OR r.id = $2) AND ($3::text IS NULL OR r.ref = $3)
   AND ($4::text IS NULL OR split_part(r.ref, '.', 1) = $4) AND ($5::text IS NULL OR t.ref = $5)
   AND ($6::text IS NULL OR a.ref = $6) AND ($7::bool IS NULL OR r.enabled = $7)
 ORDER BY r.ref, r.tenant_id NULLS LAST, r.id
 LIMIT $8 OFFSET $9
