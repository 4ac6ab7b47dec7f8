-- Failure rate per action, over finished executions (succeeded, succeeded_with_errors,
-- failed, canceled). Canceled is counted apart: a cancel is a person's decision, not a
-- failure. Rolled-up executions (all finished) are read from their rollup, the others
-- from the table. Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.action_failure_rate WITH (security_invoker = true) AS
SELECT x.tenant_id,
       x.action_ref,
       sum(x.n)::bigint AS finished,
       coalesce(sum(x.n) FILTER (WHERE x.status = 'succeeded'), 0)::bigint AS succeeded,
       coalesce(sum(x.n) FILTER (WHERE x.status = 'succeeded_with_errors'), 0)::bigint AS succeeded_with_errors,
       coalesce(sum(x.n) FILTER (WHERE x.status = 'failed'), 0)::bigint AS failed,
       coalesce(sum(x.n) FILTER (WHERE x.status = 'canceled'), 0)::bigint AS canceled,
       round(coalesce(sum(x.n) FILTER (WHERE x.status = 'failed'), 0) / sum(x.n), 4) AS failure_rate
  FROM (SELECT r.tenant_id, r.action_ref, r.status, r.executions AS n
          FROM attune.execution_rollup r
        UNION ALL
        SELECT e.tenant_id, e.action_ref, e.status, 1
          FROM attune.execution_unrolled() e
         WHERE e.status IN ('succeeded', 'succeeded_with_errors', 'failed', 'canceled')) x
 GROUP BY x.tenant_id, x.action_ref;

COMMENT ON VIEW attune_reporting.action_failure_rate IS
    'Finished executions per tenant and action, by outcome, and the share that failed.';
COMMENT ON COLUMN attune_reporting.action_failure_rate.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.action_failure_rate.action_ref IS 'The action executed, pack.name.';
COMMENT ON COLUMN attune_reporting.action_failure_rate.finished IS 'Executions in a final status.';
COMMENT ON COLUMN attune_reporting.action_failure_rate.succeeded IS 'Executions that succeeded.';
COMMENT ON COLUMN attune_reporting.action_failure_rate.succeeded_with_errors IS 'Workflows that finished with some tasks failed.';
COMMENT ON COLUMN attune_reporting.action_failure_rate.failed IS 'Executions that failed.';
COMMENT ON COLUMN attune_reporting.action_failure_rate.canceled IS 'Executions canceled.';
COMMENT ON COLUMN attune_reporting.action_failure_rate.failure_rate IS 'failed / finished, 0 to 1, four decimals.';
