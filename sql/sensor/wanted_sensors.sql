-- Custom sensors that should run: enabled, of an enabled trigger that an enabled rule uses,
-- in a pack loaded from a directory.
SELECT s.id, s.tenant_id, s.ref AS sensor_ref, s.runner_type AS "runner_type: RunnerType", s.entry_point, s.poll_interval, s.config,
       s.trigger_id, t.ref AS trigger_ref, p.path AS pack_path, s.updated_at
  FROM attune.sensor s
  JOIN attune.trigger t ON t.id = s.trigger_id
  JOIN attune.pack p ON p.id = s.pack_id
 WHERE s.enabled AND t.enabled AND p.path IS NOT NULL
   AND EXISTS (SELECT 1 FROM attune.rule r WHERE r.trigger_id = t.id AND r.enabled)
