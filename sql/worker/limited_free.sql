-- Free slots of the limited actions $1, whose rows the caller has locked (limited_lock.sql):
-- their limit less their running (or canceling) executions, counted now.
SELECT a.id AS "id!", a.concurrency - (SELECT count(*) FROM attune.execution r
                                      WHERE r.action_id = a.id AND r.status IN ('running', 'canceling'))::int AS "free!"
  FROM attune.action a
 WHERE a.id = ANY($1)
 ORDER BY a.id
