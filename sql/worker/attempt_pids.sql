-- The pids of started attempts, a batch at a time (element i of each array for one
-- attempt): recorded only while the attempt is still `running` here.
UPDATE attune.execution_attempt a
   SET pid = s.pid
  FROM unnest($1::bigint[], $2::int[], $3::int[]) AS s(execution_id, attempt, pid)
 WHERE a.execution_id = s.execution_id AND a.attempt = s.attempt AND a.status = 'running'
