-- The history partitions are analyzed once as many of their rows have changed as they hold
-- (autovacuum_analyze_scale_factor 1.0; was 0.05 for executions, the server's 0.1 for the
-- others). An ANALYZE of a partition invalidates every cached plan that reads it: each
-- pooled connection then plans its hot statements again at their next use (1–8 ms each,
-- on the pipeline's path), and the ANALYZE itself takes a core for a moment. On a steady
-- stream that came every few seconds and showed in the latency (docs/benchmarks.md, "Fewer
-- re-plans"). The statistics change little between analyzes: the hot path reads partial
-- indexes and keys; sizes (relpages, reltuples) are kept current by every vacuum.
-- New partitions copy their settings from the newest one (history_create_partition).
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT c.oid::regclass
          FROM pg_inherits h
          JOIN pg_class c ON c.oid = h.inhrelid
          JOIN pg_class p ON p.oid = h.inhparent
         WHERE p.relnamespace = 'attune'::regnamespace AND p.relkind = 'p' AND c.relkind = 'r'
    LOOP
        EXECUTE format('ALTER TABLE %s SET (autovacuum_analyze_scale_factor = 1.0)', part);
    END LOOP;
END $$;
