-- `attune bench` (noop/shell): the figures of the run whose events follow event $1 —
-- ingest span, end-to-end span, accepted -> running and accepted -> finished percentiles
-- (ms), the executions' own created -> finished percentiles (ms), and how many failed.
SELECT extract(epoch FROM max(ev.created_at) - min(ev.created_at))::float8 AS "ingest_s!",
       extract(epoch FROM max(x.finished_at) - min(ev.created_at))::float8 AS "total_s!",
       percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM x.started_at - ev.created_at)) * 1000 AS "running_p50!",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM x.started_at - ev.created_at)) * 1000 AS "running_p95!",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM x.started_at - ev.created_at)) * 1000 AS "running_p99!",
       percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM x.finished_at - ev.created_at)) * 1000 AS "finished_p50!",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM x.finished_at - ev.created_at)) * 1000 AS "finished_p95!",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM x.finished_at - ev.created_at)) * 1000 AS "finished_p99!",
       percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM x.finished_at - x.created_at)) * 1000 AS "life_p50!",
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM x.finished_at - x.created_at)) * 1000 AS "life_p95!",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM x.finished_at - x.created_at)) * 1000 AS "life_p99!",
       count(*) FILTER (WHERE x.status = 'failed') AS "failed!"
  FROM attune.event ev
  JOIN attune.enforcement f ON f.event_id = ev.id
  JOIN attune.execution x ON x.enforcement_id = f.id
 WHERE ev.id > $1
