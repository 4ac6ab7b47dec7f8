-- Queue depth by status: executions not yet finished, per status, and how long the oldest
-- has been there (since it was requested). requested waits for the scheduler, scheduled
-- for a worker slot (ready ones have run_after passed), running/canceling hold a slot,
-- paused waits on a person or a workflow. Read through attune.execution_unfinished() (each
-- status through its partial index). Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.queue_depth WITH (security_invoker = true) AS
SELECT e.tenant_id,
       e.status,
       count(*) AS executions,
       count(*) FILTER (WHERE e.run_after <= now()) AS ready,
       min(e.created_at) AS oldest_created_at,
       round(extract(epoch FROM now() - min(e.created_at)), 3) AS oldest_age_seconds
  FROM attune.execution_unfinished() e
 GROUP BY e.tenant_id, e.status;

COMMENT ON VIEW attune_reporting.queue_depth IS
    'Unfinished executions per tenant and status, with the age of the oldest.';
COMMENT ON COLUMN attune_reporting.queue_depth.tenant_id IS 'The tenant the executions belong to.';
COMMENT ON COLUMN attune_reporting.queue_depth.status IS 'requested, scheduled, running, paused or canceling.';
COMMENT ON COLUMN attune_reporting.queue_depth.executions IS 'Executions in that status.';
COMMENT ON COLUMN attune_reporting.queue_depth.ready IS 'Of those, the ones whose run_after has passed (for scheduled: claimable now).';
COMMENT ON COLUMN attune_reporting.queue_depth.oldest_created_at IS 'When the oldest of them was requested.';
COMMENT ON COLUMN attune_reporting.queue_depth.oldest_age_seconds IS 'Seconds since the oldest of them was requested.';
