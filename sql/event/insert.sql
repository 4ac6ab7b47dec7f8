-- One event of trigger $2 ($3 its ref) for tenant $1 with payload $4 from source $5
-- (sensor, amqp), and its change-log row. Returns the event's id — or no row when the
-- trigger is gone: its row is locked against a delete (FOR KEY SHARE) while the event is
-- written, so an event is never stored for a trigger deleted meanwhile (a sensor of a pack
-- being removed, a message for a trigger deleted since it was looked up).
WITH live AS (
    SELECT t.id FROM attune.trigger t WHERE t.id = $2 FOR KEY SHARE
), created AS (
    INSERT INTO attune.event AS ev (tenant_id, trigger_id, trigger_ref, payload, source)
    SELECT $1, live.id, $3, $4, $5 FROM live
    RETURNING ev.id, ev.tenant_id, attune.event_change(ev) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'event', id, 'event.created', change FROM created
)
SELECT id AS "id!" FROM created
