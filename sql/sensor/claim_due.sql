-- Due ticks, claimed so that each fires once however many sensor services run
-- (partial index timer_state_due (next_fire_at) WHERE next_fire_at IS NOT NULL).
SELECT ts.trigger_id, ts.next_fire_at, ts.seq, t.type, t.parameters, t.tenant_id, t.ref
  FROM attune.timer_state ts
  JOIN attune.trigger t ON t.id = ts.trigger_id
 WHERE ts.next_fire_at IS NOT NULL AND ts.next_fire_at <= clock_timestamp()
 ORDER BY ts.next_fire_at
 LIMIT $1
   FOR UPDATE OF ts SKIP LOCKED
