-- Custom sensors visible to tenant $1 with their trigger ref, in ref order: one by id ($2)
-- or ref ($3), or a page filtered by pack ($4), $5 rows from $6.
SELECT s.id, s.ref AS "sensor_ref", split_part(s.ref, '.', 1) AS "pack!", s.description,
       s.runner_type AS "runner_type: RunnerType", s.entry_point, s.poll_interval, t.ref AS "trigger", s.config,
       s.enabled, s.tenant_id IS NULL AS "system!", s.created_at, s.updated_at
  FROM attune.sensor s
  JOIN attune.trigger t ON t.id = s.trigger_id
 WHERE (s.tenant_id = $1 OR s.tenant_id IS NULL)
   AND ($2::bigint IS NULL OR s.id = $2) AND ($3::text IS NULL OR s.ref = $3)
   AND ($4::text IS NULL OR split_part(s.ref, '.', 1) = $4)
 ORDER BY s.ref, s.tenant_id NULLS LAST, s.id
 LIMIT $5 OFFSET $6
