-- The rule engine's claim: a batch of unmatched events, oldest first, skipping those
-- another engine holds. Backed by the partial index event_unprocessed (id) WHERE processed_at IS NULL.
SELECT e.id, e.tenant_id, e.trigger_id, e.trigger_ref, e.payload
  FROM attune.event e
 WHERE e.id IN (SELECT id FROM attune.event
                 WHERE processed_at IS NULL
                 ORDER BY id
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
 ORDER BY e.id
