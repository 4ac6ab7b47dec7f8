-- Executions per hour, by action and status: how much ran, and how it ended. An execution
-- counts in the hour it was created (requested); its status is the current one, so the
-- latest hours still show work in flight. Finished executions are read from their
-- rollup (kept by quarter hour, cut to the hour here in the reader's time zone), the rest
-- from the table (migration 20261130000043_reporting_rollups). Security invoker: read
-- with the caller's privileges, so a reporting login sees its own tenant only (RLS on
-- attune.execution and the rollup).
CREATE OR REPLACE VIEW attune_reporting.executions_per_hour WITH (security_invoker = true) AS
SELECT x.tenant_id, x.hour, x.action_ref, x.status, sum(x.executions)::bigint AS executions
  FROM (SELECT r.tenant_id, date_trunc('hour', r.quarter) AS hour, r.action_ref, r.status, r.executions
          FROM attune.execution_rollup r
        UNION ALL
        SELECT e.tenant_id, date_trunc('hour', e.created_at), e.action_ref, e.status, 1
          FROM attune.execution_unrolled() e) x
 GROUP BY x.tenant_id, x.hour, x.action_ref, x.status;

COMMENT ON VIEW attune_reporting.executions_per_hour IS
    'Executions created per hour, by tenant, action and current status.';
COMMENT ON COLUMN attune_reporting.executions_per_hour.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.executions_per_hour.hour IS 'Start of the hour the executions were created in (requested).';
COMMENT ON COLUMN attune_reporting.executions_per_hour.action_ref IS 'The action executed, pack.name.';
COMMENT ON COLUMN attune_reporting.executions_per_hour.status IS 'Current status: requested, scheduled, running, paused, canceling, succeeded, failed, canceled or succeeded_with_errors.';
COMMENT ON COLUMN attune_reporting.executions_per_hour.executions IS 'Number of executions.';
