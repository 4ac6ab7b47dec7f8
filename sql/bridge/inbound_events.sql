-- A batch of inbound RabbitMQ messages as events, one statement and one commit (group
-- commit; crates/bridge/src/inbound/store.rs). Element i of $1 (tenant), $2 (trigger ref)
-- and $3 (payload) is message i. Each message's trigger is ref $2 of tenant $1 — the
-- tenant's own triggers only, never another tenant's nor a system pack's (as
-- inbound_trigger.sql; index trigger_ref_per_tenant). Messages of an enabled webhook or
-- custom trigger become events, with their change-log rows; for the others the row says
-- why not (no trigger: type NULL), and the caller dead-letters them with that reason.
-- Ids are drawn before the insert so each maps back to its message (`ord`).
WITH input AS (
    SELECT r.ord, r.tenant_id, r.trigger_ref, r.payload, t.id AS trigger_id, t.type, t.enabled,
           CASE WHEN t.enabled AND t.type IN ('webhook', 'custom') THEN nextval('attune.event_id_seq') END AS event_id
      FROM unnest($1::bigint[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS r (tenant_id, trigger_ref, payload, ord)
      LEFT JOIN attune.trigger t ON COALESCE(t.tenant_id, 0) = r.tenant_id AND t.ref = r.trigger_ref
), created AS (
    INSERT INTO attune.event AS ev (id, tenant_id, trigger_id, trigger_ref, payload, source)
    SELECT event_id, tenant_id, trigger_id, trigger_ref, payload, 'amqp' FROM input
     WHERE event_id IS NOT NULL ORDER BY event_id
    RETURNING ev.id, ev.tenant_id, attune.event_change(ev) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'event', id, 'event.created', change FROM created
)
SELECT ord AS "ord!", event_id AS "event_id?", type AS "trigger_type?: TriggerType", enabled AS "enabled?"
  FROM input ORDER BY ord
