-- How many rules rule_select.sql's filters match (tenant $1, pack $2, trigger $3,
-- action $4, enabled $5).
SELECT count(*) AS "count!"
  FROM attune.rule r
  JOIN attune.trigger t ON t.id = r.trigger_id
  JOIN attune.action a ON a.id = r.action_id
 WHERE (r.tenant_id = $1 OR r.tenant_id IS NULL)
   AND ($2::text IS NULL OR split_part(r.ref, '.', 1) = $2) AND ($3::text IS NULL OR t.ref = $3)
   AND ($4::text IS NULL OR a.ref = $4) AND ($5::bool IS NULL OR r.enabled = $5)
