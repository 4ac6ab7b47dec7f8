-- As retain.sql at a given time $3 (tests move time forward); the owner's only.
SELECT partition_name AS "partition!", dropped AS "dropped!", reason
  FROM attune.history_retain_at($1, make_interval(secs => $2), $3)
