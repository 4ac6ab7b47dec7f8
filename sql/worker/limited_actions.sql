-- Actions with a concurrency limit that have runnable work for this worker, locked (so
-- claims of one limited action are serialised across workers), with their free slots.
SELECT a.id, a.concurrency - (SELECT count(*) FROM attune.execution r
                               WHERE r.action_id = a.id AND r.status IN ('running', 'canceling'))::int AS "free!"
  FROM attune.action a
 WHERE a.concurrency IS NOT NULL
   AND EXISTS (SELECT 1 FROM attune.execution e
                WHERE e.action_id = a.id AND e.status = 'scheduled' AND e.run_after <= now() AND e.runner_type = ANY($1))
   FOR UPDATE OF a SKIP LOCKED
