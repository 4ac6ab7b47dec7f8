-- Worker utilisation: for each live worker (active or draining), its slots, how many are
-- in use (its heartbeat-maintained running count), and how many of those hold the
-- reporting tenant's executions. Worker rows are shared infrastructure and carry no
-- tenant data; the tenant's share comes from attune.execution under RLS, one row per
-- worker and visible tenant (a reporting login sees only its own tenant). Security
-- invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.worker_utilisation WITH (security_invoker = true) AS
SELECT t.id AS tenant_id,
       w.name AS worker,
       w.status,
       w.capacity,
       w.running,
       round(w.running::numeric / w.capacity, 4) AS utilisation,
       (SELECT count(*) FROM attune.execution x
         WHERE x.worker_id = w.id AND x.tenant_id = t.id AND x.status IN ('running', 'canceling')) AS tenant_running,
       round(extract(epoch FROM now() - w.heartbeat_at), 3) AS heartbeat_age_seconds
  FROM attune.worker w
 CROSS JOIN attune.tenant t
 WHERE w.status IN ('active', 'draining');

COMMENT ON VIEW attune_reporting.worker_utilisation IS
    'Live workers: slots, slots in use, and the slots holding each tenant''s executions.';
COMMENT ON COLUMN attune_reporting.worker_utilisation.tenant_id IS 'The tenant whose share tenant_running counts.';
COMMENT ON COLUMN attune_reporting.worker_utilisation.worker IS 'The worker''s name, host/pid/n.';
COMMENT ON COLUMN attune_reporting.worker_utilisation.status IS 'active or draining.';
COMMENT ON COLUMN attune_reporting.worker_utilisation.capacity IS 'Executions the worker runs at once.';
COMMENT ON COLUMN attune_reporting.worker_utilisation.running IS 'Slots in use, all tenants, as of the worker''s last heartbeat.';
COMMENT ON COLUMN attune_reporting.worker_utilisation.utilisation IS 'running / capacity, 0 to 1, four decimals.';
COMMENT ON COLUMN attune_reporting.worker_utilisation.tenant_running IS 'This tenant''s executions running (or canceling) on the worker now.';
COMMENT ON COLUMN attune_reporting.worker_utilisation.heartbeat_age_seconds IS 'Seconds since the worker''s last heartbeat.';
