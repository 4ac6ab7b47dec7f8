-- Event → execution start latency per rule: from the event's arrival (event.created_at)
-- to a worker starting the execution the rule made of it (execution.started_at), through
-- the enforcement. The whole pipeline in one figure: rule matching, scheduling, queueing,
-- claim. Finished executions are read from their rollup (counted when they finished,
-- with their event then), the others from the tables. Percentiles interpolate between
-- latencies rounded to the millisecond (3 significant digits from 1 s); mean and maximum
-- are exact. Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.event_to_start_latency WITH (security_invoker = true) AS
WITH d AS (
    SELECT y.tenant_id, y.rule_ref, y.seconds, sum(y.n)::bigint AS n, sum(y.total) AS total, max(y.longest) AS longest
      FROM (SELECT r.tenant_id, r.rule_ref, r.seconds, r.executions AS n, r.total, r.longest
              FROM attune.execution_latency_rollup r
            UNION ALL
            SELECT x.tenant_id, l.rule_ref, attune.reporting_seconds(x.started_at - l.created_at), 1,
                   extract(epoch FROM x.started_at - l.created_at), extract(epoch FROM x.started_at - l.created_at)
              FROM attune.execution_unrolled() x
             CROSS JOIN LATERAL (
                   -- One lookup by id per execution not rolled up yet (LIMIT 1 keeps the
                   -- planner from joining the whole enforcement and event history instead).
                   SELECT enf.rule_ref, ev.created_at
                     FROM attune.enforcement enf JOIN attune.event ev ON ev.id = enf.event_id
                    WHERE enf.id = x.enforcement_id
                    LIMIT 1) l
             WHERE x.started_at IS NOT NULL AND l.rule_ref IS NOT NULL) y
     GROUP BY y.tenant_id, y.rule_ref, y.seconds
), g AS (
    SELECT d.tenant_id, d.rule_ref, sum(d.n)::bigint AS executions, sum(d.total) AS total, max(d.longest) AS longest,
           array_agg(d.seconds ORDER BY d.seconds) AS vals, array_agg(d.n ORDER BY d.seconds) AS counts
      FROM d
     GROUP BY d.tenant_id, d.rule_ref
)
SELECT g.tenant_id,
       g.rule_ref,
       g.executions,
       round(g.total / g.executions, 3) AS avg_seconds,
       round(attune.reporting_percentile(0.50, g.vals, g.counts), 3) AS p50_seconds,
       round(attune.reporting_percentile(0.95, g.vals, g.counts), 3) AS p95_seconds,
       round(g.longest, 3) AS max_seconds
  FROM g;

COMMENT ON VIEW attune_reporting.event_to_start_latency IS
    'Per tenant and rule: time from an event''s arrival to a worker starting the execution the rule made of it.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.rule_ref IS 'The rule that matched the event, pack.name.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.executions IS 'Started executions measured.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.avg_seconds IS 'Mean latency, seconds.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.p50_seconds IS 'Median latency, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.p95_seconds IS '95th percentile latency, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.max_seconds IS 'Longest latency, seconds.';
