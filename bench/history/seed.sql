-- Seeds a history for issue 15's measurement (docs/benchmarks.md, "History"): :rows
-- finished executions (each with its event, enforcement, attempt and output) spread over
-- :parts partitions a week apart, the newest closed a week ago, as the weekly cuts of
-- `attune.history_rotate_at` would have left them. Run as the owner (or the superuser)
-- against an instance's database:
--
--   psql "$URL" -v rows=1000000 -v parts=8 -f bench/history/seed.sql
--
-- It writes into tenant `default` with action `core.noop`, events of trigger
-- `histbench.hook` matched by rule `histbench.rule` (made here if missing), run times of
-- 2 to 98 ms, one execution in 50 failed, then back-dates the partitions' catalog rows
-- (the rows' own times are back-dated as they are written).
\set ON_ERROR_STOP on
-- psql variables do not reach into the DO block's body: handed over as settings.
SELECT set_config('bench.rows', :'rows', false), set_config('bench.parts', :'parts', false),
       set_config('bench.tenant', (SELECT id::text FROM attune.tenant WHERE name = 'default'), false),
       set_config('bench.action', (SELECT id::text FROM attune.action WHERE ref = 'core.noop'), false) \g /dev/null
INSERT INTO attune.pack (tenant_id, ref) SELECT current_setting('bench.tenant')::bigint, 'histbench'
 WHERE NOT EXISTS (SELECT 1 FROM attune.pack WHERE ref = 'histbench');
INSERT INTO attune.trigger (tenant_id, pack_id, ref, type)
SELECT p.tenant_id, p.id, 'histbench.hook', 'custom' FROM attune.pack p
 WHERE p.ref = 'histbench' AND NOT EXISTS (SELECT 1 FROM attune.trigger WHERE ref = 'histbench.hook');
INSERT INTO attune.rule (tenant_id, pack_id, ref, trigger_id, action_id, enabled)
SELECT p.tenant_id, p.id, 'histbench.rule', t.id, current_setting('bench.action')::bigint, false
  FROM attune.pack p JOIN attune.trigger t ON t.ref = 'histbench.hook'
 WHERE p.ref = 'histbench' AND NOT EXISTS (SELECT 1 FROM attune.rule WHERE ref = 'histbench.rule');
SELECT set_config('bench.trigger', (SELECT id::text FROM attune.trigger WHERE ref = 'histbench.hook'), false),
       set_config('bench.rule', (SELECT id::text FROM attune.rule WHERE ref = 'histbench.rule'), false) \g /dev/null

DO $$
DECLARE
    parts constant integer := current_setting('bench.parts')::integer;
    per constant integer := current_setting('bench.rows')::integer / parts;
    tenant constant bigint := current_setting('bench.tenant')::bigint;
    action constant bigint := current_setting('bench.action')::bigint;
    trig constant bigint := current_setting('bench.trigger')::bigint;
    rule constant bigint := current_setting('bench.rule')::bigint;
    k integer;
    f text;
    base timestamptz;
BEGIN
    FOR k IN 0 .. parts - 1 LOOP
        -- Partition k's rows were written during week k, counted back from a week ago.
        base := now() - make_interval(days => 7 * (parts - k + 1));
        CREATE TEMP TABLE seeded AS
        SELECT g, base + make_interval(secs => g * (7 * 86400.0 / per)) AS at FROM generate_series(1, per) g;
        WITH ev AS (
            INSERT INTO attune.event (tenant_id, trigger_id, trigger_ref, payload, created_at, processed_at)
            SELECT tenant, trig, 'histbench.hook', '{}', at, at FROM seeded ORDER BY g
            RETURNING id, created_at
        ), en AS (
            INSERT INTO attune.enforcement (tenant_id, rule_id, rule_ref, event_id, status, created_at)
            SELECT tenant, rule, 'histbench.rule', id, 'processed', created_at FROM ev
            RETURNING id, created_at
        ), ex AS (
            INSERT INTO attune.execution (tenant_id, action_id, action_ref, runner_type, status, enforcement_id,
                                          rule_id, rule_ref, created_at, started_at, finished_at, result)
            SELECT tenant, action, 'core.noop', 'builtin', CASE WHEN id % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
                   id, rule, 'histbench.rule', created_at,
                   created_at + make_interval(secs => (1 + id % 7) / 1000.0),
                   created_at + make_interval(secs => (1 + id % 7 + 2 + (id * 7919) % 97) / 1000.0), '{"output": null}'
              FROM en
            RETURNING id, started_at, finished_at
        ), att AS (
            INSERT INTO attune.execution_attempt (execution_id, attempt, status, started_at, finished_at)
            SELECT id, 1, 'succeeded', started_at, finished_at FROM ex
        )
        INSERT INTO attune.execution_output (execution_id, stdout, stderr) SELECT id, '', '' FROM ex;
        DROP TABLE seeded;
        COMMIT;
        -- Each cut in a short transaction of its own, as the maintenance makes them: a cut
        -- attaches the next partition, which locks the tables its foreign keys name (the
        -- workers' heartbeats write one of them) until it commits.
        FOREACH f IN ARRAY ARRAY['event', 'enforcement', 'execution'] LOOP
            PERFORM attune.history_rotate_at(f, interval '0', clock_timestamp());
            COMMIT;
        END LOOP;
    END LOOP;
    -- The catalog as the weekly cuts would have left it.
    UPDATE attune.history_partition h
       SET opened_at = now() - make_interval(days => 7 * (parts - h.n + 1)),
           closed_at = CASE WHEN h.n < parts THEN now() - make_interval(days => 7 * (parts - h.n)) END
     WHERE h.family IN ('event', 'enforcement', 'execution') AND h.n <= parts;
END $$;
VACUUM ANALYZE attune.event, attune.enforcement, attune.execution, attune.execution_attempt, attune.execution_output;
SELECT family, n, opened_at::date, closed_at::date FROM attune.history_partition
 WHERE family IN ('event', 'enforcement', 'execution') ORDER BY family, n;
