-- `attune bench --mode python`: executions $1, each submitted at $2[i] (the client's
-- clock just before its POST, seconds since the epoch; the database runs on the same
-- machine and clock): submit -> running, submit -> finished and the execution's own
-- created -> finished percentiles (ms), and how many did not succeed.
WITH s AS (
    SELECT * FROM unnest($1::bigint[], $2::float8[]) AS s(id, sent)
), t AS (
    SELECT (extract(epoch FROM x.started_at) - s.sent) * 1000 AS running,
           (extract(epoch FROM x.finished_at) - s.sent) * 1000 AS finished,
           extract(epoch FROM x.finished_at - x.created_at) * 1000 AS life,
           x.status
      FROM s JOIN attune.execution x ON x.id = s.id
)
SELECT percentile_cont(0.50) WITHIN GROUP (ORDER BY running)::float8 AS "running_p50!",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY running)::float8 AS "running_p95!",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY running)::float8 AS "running_p99!",
       percentile_cont(0.50) WITHIN GROUP (ORDER BY finished)::float8 AS "finished_p50!",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY finished)::float8 AS "finished_p95!",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY finished)::float8 AS "finished_p99!",
       percentile_cont(0.50) WITHIN GROUP (ORDER BY life)::float8 AS "life_p50!",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY life)::float8 AS "life_p95!",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY life)::float8 AS "life_p99!",
       count(*) FILTER (WHERE t.status <> 'succeeded') AS "failed!"
  FROM t
