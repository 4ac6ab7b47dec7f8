-- Every timer trigger with whether it should tick (enabled, and at least one enabled rule
-- uses it) and its current state. The sensor service reconciles timer_state from this.
SELECT t.id, t.type, t.parameters, t.updated_at,
       t.enabled AND EXISTS (SELECT 1 FROM attune.rule r WHERE r.trigger_id = t.id AND r.enabled) AS active,
       ts.trigger_id IS NOT NULL AS has_state, ts.next_fire_at, ts.done, ts.updated_at AS state_updated_at
  FROM attune.trigger t
  LEFT JOIN attune.timer_state ts ON ts.trigger_id = t.id
 WHERE t.type IN ('timer.interval', 'timer.cron', 'timer.date')
