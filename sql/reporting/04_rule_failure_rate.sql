-- Failure rate per rule: the same figures as action_failure_rate, for the executions a
-- rule started (execution.rule_ref; hand-started executions have none). Security
-- invoker: caller's privileges and RLS. Rolled-up executions (all finished) are read from
-- their rollup, the others from the table.
CREATE OR REPLACE VIEW attune_reporting.rule_failure_rate WITH (security_invoker = true) AS
SELECT x.tenant_id,
       x.rule_ref,
       sum(x.n)::bigint AS finished,
       coalesce(sum(x.n) FILTER (WHERE x.status = 'succeeded'), 0)::bigint AS succeeded,
       coalesce(sum(x.n) FILTER (WHERE x.status = 'succeeded_with_errors'), 0)::bigint AS succeeded_with_errors,
       coalesce(sum(x.n) FILTER (WHERE x.status = 'failed'), 0)::bigint AS failed,
       coalesce(sum(x.n) FILTER (WHERE x.status = 'canceled'), 0)::bigint AS canceled,
       round(coalesce(sum(x.n) FILTER (WHERE x.status = 'failed'), 0) / sum(x.n), 4) AS failure_rate
  FROM (SELECT r.tenant_id, r.rule_ref, r.status, r.executions AS n
          FROM attune.execution_rollup r
         WHERE r.rule_ref IS NOT NULL
        UNION ALL
        SELECT e.tenant_id, e.rule_ref, e.status, 1
          FROM attune.execution_unrolled() e
         WHERE e.status IN ('succeeded', 'succeeded_with_errors', 'failed', 'canceled')
           AND e.rule_ref IS NOT NULL) x
 GROUP BY x.tenant_id, x.rule_ref;

COMMENT ON VIEW attune_reporting.rule_failure_rate IS
    'Finished executions started by each rule, per tenant, by outcome, and the share that failed.';
COMMENT ON COLUMN attune_reporting.rule_failure_rate.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.rule_failure_rate.rule_ref IS 'The rule that started the executions, pack.name.';
COMMENT ON COLUMN attune_reporting.rule_failure_rate.finished IS 'Executions in a final status.';
COMMENT ON COLUMN attune_reporting.rule_failure_rate.succeeded IS 'Executions that succeeded.';
COMMENT ON COLUMN attune_reporting.rule_failure_rate.succeeded_with_errors IS 'Workflows that finished with some tasks failed.';
COMMENT ON COLUMN attune_reporting.rule_failure_rate.failed IS 'Executions that failed.';
COMMENT ON COLUMN attune_reporting.rule_failure_rate.canceled IS 'Executions canceled.';
COMMENT ON COLUMN attune_reporting.rule_failure_rate.failure_rate IS 'failed / finished, 0 to 1, four decimals.';
