-- Queue depth and oldest-waiting age of each work table, read when /metrics is scraped.
-- One row per queue: (queue, depth, oldest_age_seconds). Each branch touches only a
-- partial index (execution_requested, execution_ready, execution_held, event_unprocessed,
-- inquiry_pending_expiry), so the scrape stays cheap however long the history grows.
-- "Oldest" is measured from created_at (for scheduled: from run_after, the moment the
-- execution became claimable; for running: from started_at).
SELECT 'executions_requested' AS "queue!", count(*) AS "depth!",
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS "oldest_age_seconds!"
  FROM attune.execution WHERE status = 'requested'
UNION ALL
SELECT 'executions_scheduled', count(*),
       coalesce(extract(epoch FROM now() - min(least(run_after, now()))), 0)::float8
  FROM attune.execution WHERE status = 'scheduled'
UNION ALL
SELECT 'executions_running', count(*),
       coalesce(extract(epoch FROM now() - min(coalesce(started_at, created_at))), 0)::float8
  FROM attune.execution WHERE status IN ('running', 'canceling')
UNION ALL
SELECT 'events_unprocessed', count(*),
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
  FROM attune.event WHERE processed_at IS NULL
UNION ALL
SELECT 'inquiries_pending', count(*),
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
  FROM attune.inquiry WHERE status = 'pending'
