-- The webhook intake's group commit (crates/api/src/ingest.rs): the webhook requests that
-- arrived while the previous commit was in flight, written by one statement, one commit.
-- One array element per request:
--   $1 the webhook key from its URL,
--   $2 its body, JSON text the API has already parsed once (so it is valid JSON),
--   $3 whether the API checked its X-Attune-Signature (a trigger with a webhook_secret
--      takes only those),
--   $4 when it arrived (the event's created_at: "accepted" then includes the wait here).
-- A request whose key names no enabled webhook trigger, or a signed trigger it did not
-- prove, gets no row: the API's slow path answers it (404, 401, 409).
-- Ids are drawn before the insert so that each maps back to its request (`ord`): the
-- order of an INSERT's RETURNING is not defined. The change-log rows (event.created) are
-- written by the same statement, as for every event.
WITH input AS (
    SELECT nextval('attune.event_id_seq') AS id, r.ord, t.tenant_id, t.id AS trigger_id,
           t.ref AS trigger_ref, r.body::jsonb AS payload, r.arrived
      FROM unnest($1::text[], $2::text[], $3::bool[], $4::timestamptz[])
           WITH ORDINALITY AS r (key, body, verified, arrived, ord)
      JOIN attune.trigger t
        ON t.webhook_key = r.key AND t.type = 'webhook' AND t.enabled
       AND (t.webhook_secret IS NULL OR r.verified)
), created AS (
    INSERT INTO attune.event AS ev (id, tenant_id, trigger_id, trigger_ref, payload, source, created_at)
    SELECT id, tenant_id, trigger_id, trigger_ref, payload, 'webhook', arrived FROM input ORDER BY id
    RETURNING ev.id, ev.tenant_id, attune.event_change(ev) AS change
), logged AS (
    INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
    SELECT tenant_id, 'event', id, 'event.created', change FROM created
)
SELECT ord AS "ord!", id AS "id!" FROM input
