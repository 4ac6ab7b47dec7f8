-- Run-time percentiles per action: how long an action takes from the worker starting it
-- to its end (started_at → finished_at), over finished executions that ran (canceled
-- before start has no duration). Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.action_duration WITH (security_invoker = true) AS
SELECT e.tenant_id,
       e.action_ref,
       count(*) AS executions,
       round(percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at))::numeric, 3) AS p50_seconds,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at))::numeric, 3) AS p95_seconds,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM e.finished_at - e.started_at))::numeric, 3) AS p99_seconds,
       round(max(extract(epoch FROM e.finished_at - e.started_at)), 3) AS max_seconds
  FROM attune.execution e
 WHERE e.started_at IS NOT NULL AND e.finished_at IS NOT NULL
 GROUP BY e.tenant_id, e.action_ref;

COMMENT ON VIEW attune_reporting.action_duration IS
    'Run-time percentiles (started_at to finished_at) per tenant and action, over finished executions that started.';
COMMENT ON COLUMN attune_reporting.action_duration.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.action_duration.action_ref IS 'The action executed, pack.name.';
COMMENT ON COLUMN attune_reporting.action_duration.executions IS 'Number of finished executions measured.';
COMMENT ON COLUMN attune_reporting.action_duration.p50_seconds IS 'Median run time, seconds (interpolated, percentile_cont).';
COMMENT ON COLUMN attune_reporting.action_duration.p95_seconds IS '95th percentile run time, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.action_duration.p99_seconds IS '99th percentile run time, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.action_duration.max_seconds IS 'Longest run time, seconds.';
