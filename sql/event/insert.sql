-- One event of trigger $2 ($3 its ref) for tenant $1 with payload $4 from source $5
-- (webhook, sensor, amqp), and its change-log row. Returns the event's id.
WITH created AS (
    INSERT INTO attune.event AS ev (tenant_id, trigger_id, trigger_ref, payload, source)
    VALUES ($1, $2, $3, $4, $5)
    RETURNING ev.id, ev.tenant_id, attune.event_change(ev) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'event', id, 'event.created', change FROM created
)
SELECT id AS "id!" FROM created
