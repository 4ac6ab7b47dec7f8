-- Queue depth by status: executions not yet finished, per status, and how long the oldest
-- has been there (since it was requested). requested waits for the scheduler, scheduled
-- for a worker slot (ready ones have run_after passed), running/canceling hold a slot,
-- paused waits on a person or a workflow. One branch per status, each read through that
-- status's partial index (an IN list over them all matches none, and would read the whole
-- history). Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.queue_depth WITH (security_invoker = true) AS
SELECT e.tenant_id,
       e.status,
       count(*) AS executions,
       count(*) FILTER (WHERE e.run_after <= now()) AS ready,
       min(e.created_at) AS oldest_created_at,
       round(extract(epoch FROM now() - min(e.created_at)), 3) AS oldest_age_seconds
  FROM (SELECT x.tenant_id, x.status, x.run_after, x.created_at FROM attune.execution x WHERE x.status = 'requested'
        UNION ALL
        SELECT x.tenant_id, x.status, x.run_after, x.created_at FROM attune.execution x WHERE x.status = 'scheduled'
        UNION ALL
        SELECT x.tenant_id, x.status, x.run_after, x.created_at FROM attune.execution x
         WHERE x.status IN ('running', 'canceling')
        UNION ALL
        SELECT x.tenant_id, x.status, x.run_after, x.created_at FROM attune.execution x WHERE x.status = 'paused') e
 GROUP BY e.tenant_id, e.status;

COMMENT ON VIEW attune_reporting.queue_depth IS
    'Unfinished executions per tenant and status, with the age of the oldest.';
COMMENT ON COLUMN attune_reporting.queue_depth.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.queue_depth.status IS 'requested, scheduled, running, paused or canceling.';
COMMENT ON COLUMN attune_reporting.queue_depth.executions IS 'Executions in that status.';
COMMENT ON COLUMN attune_reporting.queue_depth.ready IS 'Of those, the ones whose run_after has passed (for scheduled: claimable now).';
COMMENT ON COLUMN attune_reporting.queue_depth.oldest_created_at IS 'When the oldest of them was requested.';
COMMENT ON COLUMN attune_reporting.queue_depth.oldest_age_seconds IS 'Seconds since the oldest of them was requested.';
