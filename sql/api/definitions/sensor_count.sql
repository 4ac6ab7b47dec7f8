-- How many sensors sensor_select.sql's filters match (tenant $1, pack $2).
SELECT count(*) AS "count!"
  FROM attune.sensor s
 WHERE (s.tenant_id = $1 OR s.tenant_id IS NULL) AND ($2::text IS NULL OR split_part(s.ref, '.', 1) = $2)
