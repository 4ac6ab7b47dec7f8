-- The webhook fast path, one statement: an enabled webhook trigger without a secret ($1 its
-- key) takes any JSON body ($2) as an event, written to the change log too. No row: the
-- slow path (a secret to check, a disabled or missing trigger) decides.
WITH created AS (
    INSERT INTO attune.event AS ev (tenant_id, trigger_id, trigger_ref, payload, source)
    SELECT tenant_id, id, ref, $2, 'webhook' FROM attune.trigger
     WHERE webhook_key = $1 AND type = 'webhook' AND enabled AND webhook_secret IS NULL
    RETURNING ev.id, ev.tenant_id, attune.event_change(ev) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'event', id, 'event.created', change FROM created
)
SELECT id AS "id!" FROM created
