-- The tenant's ($1) enforcements with the execution each requested, newest first: one by
-- id ($2), or a page filtered by rule ref ($3) and event ($4), $5 rows from $6.
SELECT f.id, f.rule_ref, f.rule_id, f.event_id,
       (SELECT x.id FROM attune.execution x WHERE x.enforcement_id = f.id ORDER BY x.id LIMIT 1) AS execution_id,
       f.status AS "status: EnforcementStatus", f.error, f.created_at
  FROM attune.enforcement f
 WHERE f.tenant_id = $1 AND ($2::bigint IS NULL OR f.id = $2)
   AND ($3::text IS NULL OR f.rule_ref = $3) AND ($4::bigint IS NULL OR f.event_id = $4)
 ORDER BY f.id DESC
 LIMIT $5 OFFSET $6
