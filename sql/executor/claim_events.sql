-- The rule engine's claim: a batch of unmatched events, oldest first, skipping those
-- another engine holds (partial index event_unprocessed (id) WHERE processed_at IS NULL),
-- with the definitions' version read in the same snapshot: a rule change committed before
-- any claimed event is visible to it.
SELECT e.id, e.tenant_id, e.trigger_id, e.trigger_ref, e.payload,
       (SELECT version FROM attune.definition_version) AS "definitions_version!"
  FROM attune.event e
 WHERE e.id IN (SELECT id FROM attune.event
                 WHERE processed_at IS NULL
                 ORDER BY id
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
 ORDER BY e.id
