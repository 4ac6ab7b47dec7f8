-- `attune bench` (noop/shell): the figures of the run whose events follow event $1 —
-- ingest span, end-to-end span, accepted -> running and accepted -> finished percentiles
-- (ms), the executions' own created -> finished percentiles (ms), how many failed, and
-- where accepted -> running goes, p50 and p99 (ms) of its two stages, by the rows' own
-- clocks: accepted -> the rule engine's write (the event's processed_at, set as that
-- statement starts: the webhook's group commit, the hand-off to the engine, its claim and
-- match), then -> running (the write, its commit, the hand-off to a worker and its claim up
-- to the execution's started_at).
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
       count(*) FILTER (WHERE x.status = 'failed') AS "failed!",
       percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM ev.processed_at - ev.created_at)) * 1000 AS "to_write_p50!",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM ev.processed_at - ev.created_at)) * 1000 AS "to_write_p99!",
       percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM x.started_at - ev.processed_at)) * 1000 AS "from_write_p50!",
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM x.started_at - ev.processed_at)) * 1000 AS "from_write_p99!"
  FROM attune.event ev
  JOIN attune.enforcement f ON f.event_id = ev.id
  JOIN attune.execution x ON x.enforcement_id = f.id
 WHERE ev.id > $1
