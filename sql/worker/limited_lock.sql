-- Actions with a concurrency limit that have runnable work for this worker ($1: its runner
-- types), locked, so that claims of one limited action are serialised across workers (a
-- worker skips an action another is claiming for). Their free slots are counted by
-- limited_free.sql in a statement of its own, after the locks are held: a count in this
-- statement would read a snapshot taken before the lock, which can miss the running
-- executions the previous holder committed just before releasing it.
SELECT a.id AS "id!"
  FROM attune.action a
 WHERE a.concurrency IS NOT NULL
   AND EXISTS (SELECT 1 FROM attune.execution e
                WHERE e.action_id = a.id AND e.status = 'scheduled' AND e.run_after <= now() AND e.runner_type = ANY($1))
 ORDER BY a.id
   FOR UPDATE OF a SKIP LOCKED
