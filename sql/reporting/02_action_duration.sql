-- Run-time percentiles per action: how long an action takes from the worker starting it
-- to its end (started_at → finished_at), over finished executions that ran (canceled
-- before start has no duration). Percentiles interpolate between run times rounded to the
-- millisecond (3 significant digits from 1 s), as the rollup keeps them; the maximum is
-- exact. Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.action_duration WITH (security_invoker = true) AS
WITH d AS (
    SELECT x.tenant_id, x.action_ref, x.seconds, sum(x.n)::bigint AS n, max(x.longest) AS longest
      FROM (SELECT r.tenant_id, r.action_ref, r.seconds, r.executions AS n, r.longest
              FROM attune.execution_duration_rollup r
            UNION ALL
            SELECT e.tenant_id, e.action_ref, attune.reporting_seconds(e.finished_at - e.started_at), 1,
                   extract(epoch FROM e.finished_at - e.started_at)
              FROM attune.execution_unrolled() e
             WHERE e.started_at IS NOT NULL AND e.finished_at IS NOT NULL) x
     GROUP BY x.tenant_id, x.action_ref, x.seconds
), g AS (
    SELECT d.tenant_id, d.action_ref, sum(d.n)::bigint AS executions, max(d.longest) AS longest,
           array_agg(d.seconds ORDER BY d.seconds) AS vals, array_agg(d.n ORDER BY d.seconds) AS counts
      FROM d
     GROUP BY d.tenant_id, d.action_ref
)
SELECT g.tenant_id,
       g.action_ref,
       g.executions,
       round(attune.reporting_percentile(0.50, g.vals, g.counts), 3) AS p50_seconds,
       round(attune.reporting_percentile(0.95, g.vals, g.counts), 3) AS p95_seconds,
       round(attune.reporting_percentile(0.99, g.vals, g.counts), 3) AS p99_seconds,
       round(g.longest, 3) AS max_seconds
  FROM g;

COMMENT ON VIEW attune_reporting.action_duration IS
    'Run-time percentiles (started_at to finished_at) per tenant and action, over finished executions that started.';
COMMENT ON COLUMN attune_reporting.action_duration.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.action_duration.action_ref IS 'The action executed, pack.name.';
COMMENT ON COLUMN attune_reporting.action_duration.executions IS 'Number of finished executions measured.';
COMMENT ON COLUMN attune_reporting.action_duration.p50_seconds IS 'Median run time, seconds (interpolated between run times rounded to 1 ms, 3 significant digits from 1 s).';
COMMENT ON COLUMN attune_reporting.action_duration.p95_seconds IS '95th percentile run time, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.action_duration.p99_seconds IS '99th percentile run time, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.action_duration.max_seconds IS 'Longest run time, seconds.';
