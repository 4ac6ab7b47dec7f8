-- How many actions action_select.sql's filters match (tenant $1, pack $2, runner type $3).
SELECT count(*) AS "count!"
  FROM attune.action
 WHERE (tenant_id = $1 OR tenant_id IS NULL)
   AND ($2::text IS NULL OR split_part(ref, '.', 1) = $2) AND ($3::text IS NULL OR runner_type = $3)
