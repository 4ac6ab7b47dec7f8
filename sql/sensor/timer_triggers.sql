-- Every timer trigger with whether it should tick (enabled, and at least one enabled rule
-- uses it), a hash of its schedule, and its current state. The sensor service reconciles
-- timer_state from this.
SELECT t.id AS "id!", t.type AS "kind!: TriggerType", t.parameters AS "parameters!", md5(t.type || ':' || t.parameters::text) AS "schedule_hash!",
       t.enabled AND EXISTS (SELECT 1 FROM attune.rule r WHERE r.trigger_id = t.id AND r.enabled) AS "active!",
       ts.trigger_id IS NOT NULL AS "has_state!", ts.next_fire_at, ts.done AS "done?", ts.schedule_hash AS state_hash,
       clock_timestamp() AS "now!"
  FROM attune.trigger t
  LEFT JOIN attune.timer_state ts ON ts.trigger_id = t.id
 WHERE t.type IN ('timer.interval', 'timer.cron', 'timer.date')
