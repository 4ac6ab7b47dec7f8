-- Seconds until the earliest tick of a timer in use, by the database's clock (NULL: none).
SELECT extract(epoch FROM min(ts.next_fire_at) - clock_timestamp())::float8
  FROM attune.timer_state ts
  JOIN attune.trigger t ON t.id = ts.trigger_id
 WHERE ts.next_fire_at IS NOT NULL
   AND t.enabled AND EXISTS (SELECT 1 FROM attune.rule r WHERE r.trigger_id = t.id AND r.enabled)
