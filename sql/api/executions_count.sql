-- How many executions executions.sql's filters match (tenant $1, action $2, status $3,
-- parent $4, rule $5).
SELECT count(*) AS "count!"
  FROM attune.execution e
 WHERE e.tenant_id = $1 AND ($2::text IS NULL OR e.action_ref = $2) AND ($3::text IS NULL OR e.status = $3)
   AND ($4::bigint IS NULL OR e.parent_id = $4) AND ($5::text IS NULL OR e.rule_ref = $5)
