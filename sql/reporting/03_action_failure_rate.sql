-- Failure rate per action, over finished executions (succeeded, succeeded_with_errors,
-- failed, canceled). Canceled is counted apart: a cancel is a person's decision, not a
-- failure. Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.action_failure_rate WITH (security_invoker = true) AS
SELECT e.tenant_id,
       e.action_ref,
       count(*) AS finished,
       count(*) FILTER (WHERE e.status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE e.status = 'succeeded_with_errors') AS succeeded_with_errors,
       count(*) FILTER (WHERE e.status = 'failed') AS failed,
       count(*) FILTER (WHERE e.status = 'canceled') AS canceled,
       round((count(*) FILTER (WHERE e.status = 'failed'))::numeric / count(*), 4) AS failure_rate
  FROM attune.execution e
 WHERE e.status IN ('succeeded', 'succeeded_with_errors', 'failed', 'canceled')
 GROUP BY e.tenant_id, e.action_ref;

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
