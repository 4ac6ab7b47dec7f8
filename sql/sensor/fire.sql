-- Fires a batch of claimed ticks: one event each, and each timer advanced to its next
-- tick (NULL and done for a date timer), with the events' change-log rows, in one statement.
WITH fired AS (
    UPDATE attune.timer_state ts
       SET seq = r.seq, last_fired_at = clock_timestamp(), next_fire_at = r.next_fire_at,
           done = r.done, updated_at = clock_timestamp()
      FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[], $4::bool[]) AS r(trigger_id, seq, next_fire_at, done)
     WHERE ts.trigger_id = r.trigger_id
    RETURNING ts.trigger_id
), created AS (
    INSERT INTO attune.event AS ev (tenant_id, trigger_id, trigger_ref, payload, source)
    SELECT e.tenant_id, e.trigger_id, e.trigger_ref, e.payload, 'timer'
      FROM unnest($5::bigint[], $6::bigint[], $7::text[], $8::jsonb[]) AS e(tenant_id, trigger_id, trigger_ref, payload)
      JOIN fired ON fired.trigger_id = e.trigger_id
    RETURNING ev.id, ev.tenant_id, attune.event_change(ev) AS change
)
INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
SELECT tenant_id, 'event', id, 'event.created', change FROM created ORDER BY id
