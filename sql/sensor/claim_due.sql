-- Due ticks of timers still in use, claimed so that each fires once however many sensor
-- services run (partial index timer_state_due (next_fire_at) WHERE next_fire_at IS NOT NULL).
-- Time is the database's, for every service alike.
SELECT ts.trigger_id, ts.next_fire_at AS "next_fire_at!", ts.seq, t.type AS "kind: TriggerType", t.parameters, t.tenant_id,
       t.ref AS trigger_ref, clock_timestamp() AS "now!"
  FROM attune.timer_state ts
  JOIN attune.trigger t ON t.id = ts.trigger_id
 WHERE ts.next_fire_at IS NOT NULL AND ts.next_fire_at <= clock_timestamp()
   AND t.enabled AND EXISTS (SELECT 1 FROM attune.rule r WHERE r.trigger_id = t.id AND r.enabled)
 ORDER BY ts.next_fire_at
 LIMIT $1
   FOR UPDATE OF ts SKIP LOCKED
