-- Event → execution start latency per rule: from the event's arrival (event.created_at)
-- to a worker starting the execution the rule made of it (execution.started_at), through
-- the enforcement. The whole pipeline in one figure: rule matching, scheduling, queueing,
-- claim. Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.event_to_start_latency WITH (security_invoker = true) AS
SELECT x.tenant_id,
       enf.rule_ref,
       count(*) AS executions,
       round(avg(extract(epoch FROM x.started_at - ev.created_at)), 3) AS avg_seconds,
       round(percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM x.started_at - ev.created_at))::numeric, 3) AS p50_seconds,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM x.started_at - ev.created_at))::numeric, 3) AS p95_seconds,
       round(max(extract(epoch FROM x.started_at - ev.created_at)), 3) AS max_seconds
  FROM attune.execution x
  JOIN attune.enforcement enf ON enf.id = x.enforcement_id
  JOIN attune.event ev ON ev.id = enf.event_id
 WHERE x.started_at IS NOT NULL
 GROUP BY x.tenant_id, enf.rule_ref;

COMMENT ON VIEW attune_reporting.event_to_start_latency IS
    'Per tenant and rule: time from an event''s arrival to a worker starting the execution the rule made of it.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.rule_ref IS 'The rule that matched the event, pack.name.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.executions IS 'Started executions measured.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.avg_seconds IS 'Mean latency, seconds.';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.p50_seconds IS 'Median latency, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.p95_seconds IS '95th percentile latency, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.event_to_start_latency.max_seconds IS 'Longest latency, seconds.';
