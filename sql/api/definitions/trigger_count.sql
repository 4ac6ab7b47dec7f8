-- How many triggers trigger_select.sql's filters match (tenant $1, pack $2, type $3).
SELECT count(*) AS "count!"
  FROM attune.trigger
 WHERE (tenant_id = $1 OR tenant_id IS NULL)
   AND ($2::text IS NULL OR split_part(ref, '.', 1) = $2) AND ($3::text IS NULL OR type = $3)
