-- Reporting rollups (issue 15, docs/reporting.md "How the views stay fast"). The views of
-- schema attune_reporting aggregated the whole history at every read: seconds for a
-- million executions. A finished execution, a processed event and an enforcement never
-- change again, so each is counted once into a small rollup table, and a view reads the
-- rollups plus the few rows not rolled up yet:
--
-- - `history_rollup_cursor.below`, per family: every row with a lower id is either counted
--   in the rollups or listed in `history_rollup_pending` (it was still in flight when its
--   turn came: an unfinished execution, an unprocessed event). The views read the rollups,
--   and the rows at or above `below` and the pending ones (`attune.*_unrolled()`).
-- - Ids are taken from a sequence in one order and committed in another, so the cursor
--   may only pass ids whose transactions have all ended: `history_rollup` notes the
--   sequence's position (`next_below`), at least 100 ms later the snapshot's xmax (every
--   transaction that could hold an id below it had its transaction id by then: a writer
--   takes both in one INSERT, as the change log's GAP_GRACE assumes), and moves `below` up to `next_below` once the oldest
--   transaction still running is past that xmax (as the change-log readers do,
--   attune_core::change_log).
-- - Each step reads and writes in one statement (one snapshot): a row is counted, or
--   listed as pending, never both and never neither.
-- - Rollup rows are keyed by the row's partition number, so retention removes them with
--   the partition (history_retain_at, replaced below): the views keep showing exactly
--   the history that is kept (an execution's latency is kept with the execution, even
--   when its event is dropped first).
--
-- Counts, sums and maxima are exact. Percentiles are computed over the durations rounded
-- to the millisecond below 1 s and to 3 significant digits above (the rollups keep one
-- row per such value), raw rows rounded the same way: a figure never depends on how far
-- the rollup has got.

CREATE TABLE attune.history_rollup_cursor (
    family      text PRIMARY KEY CHECK (family IN ('execution', 'event', 'enforcement')),
    below       bigint NOT NULL DEFAULT 0,      -- rows with lower ids are rolled up or pending
    next_below  bigint,                         -- the next stop, once next_xmax has passed
    next_at     timestamptz,                    -- when next_below was read
    next_xmax   bigint                          -- a snapshot's xmax, read ≥ 100 ms after next_at
);
INSERT INTO attune.history_rollup_cursor (family) VALUES ('execution'), ('event'), ('enforcement');

CREATE TABLE attune.history_rollup_pending (
    family     text NOT NULL,
    id         bigint NOT NULL,
    tenant_id  bigint,                          -- the row's (row-level security, below)
    PRIMARY KEY (family, id)
);

-- Executions per quarter of an hour (created), tenant, action, rule and final status.
-- Quarters, not hours: the view truncates to the hour in the reader's time zone, and every
-- time zone's offset is a whole number of quarters (an hour cut in UTC would not do for
-- UTC+5:30).
CREATE TABLE attune.execution_rollup (
    part        integer NOT NULL,
    tenant_id   bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    quarter     timestamptz NOT NULL,
    action_ref  text NOT NULL,
    rule_ref    text,
    status      text NOT NULL,
    executions  bigint NOT NULL
);
CREATE UNIQUE INDEX execution_rollup_key
    ON attune.execution_rollup (part, tenant_id, quarter, action_ref, (rule_ref IS NULL), (coalesce(rule_ref, '')), status);

-- Run time (started → finished) of finished executions, per rounded value.
CREATE TABLE attune.execution_duration_rollup (
    part        integer NOT NULL,
    tenant_id   bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    action_ref  text NOT NULL,
    seconds     numeric NOT NULL,               -- attune.reporting_seconds of the run time
    executions  bigint NOT NULL,
    longest     numeric NOT NULL                -- the exact longest among them
);
CREATE UNIQUE INDEX execution_duration_rollup_key
    ON attune.execution_duration_rollup (part, tenant_id, action_ref, seconds);

-- Event → start latency of finished executions a rule made, per rounded value.
-- own_event: the event and enforcement are the execution's tenant's (not, say, a system
-- trigger's event, tenant NULL): a reporting login sees only those rows, as row-level
-- security on attune.event lets it see only those events.
CREATE TABLE attune.execution_latency_rollup (
    part        integer NOT NULL,
    tenant_id   bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    rule_ref    text NOT NULL,
    own_event   boolean NOT NULL,
    seconds     numeric NOT NULL,
    executions  bigint NOT NULL,
    total       numeric NOT NULL,               -- the exact sum (for the mean)
    longest     numeric NOT NULL
);
CREATE UNIQUE INDEX execution_latency_rollup_key
    ON attune.execution_latency_rollup (part, tenant_id, rule_ref, own_event, seconds);

-- Processed events per trigger.
CREATE TABLE attune.event_rollup (
    part        integer NOT NULL,
    tenant_id   bigint REFERENCES attune.tenant (id) ON DELETE CASCADE,
    trigger_id  bigint NOT NULL,
    events      bigint NOT NULL
);
CREATE UNIQUE INDEX event_rollup_key ON attune.event_rollup (part, (coalesce(tenant_id, 0)), trigger_id);

-- Enforcements per rule.
CREATE TABLE attune.enforcement_rollup (
    part          integer NOT NULL,
    tenant_id     bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    rule_id       bigint NOT NULL,
    enforcements  bigint NOT NULL
);
CREATE UNIQUE INDEX enforcement_rollup_key ON attune.enforcement_rollup (part, tenant_id, rule_id);

-- The quarter of an hour `at` falls in (quarters from 00:00 UTC: the same in every time zone).
CREATE FUNCTION attune.reporting_quarter(at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_bin(interval '15 minutes', at, timestamptz '2000-01-01 00:00:00+00')
$$;

-- A duration as the views' percentiles count it: seconds, to the millisecond below 1 s, to
-- 3 significant digits from 1 s (at most 1,000 values below a second and 900 per decade
-- above: a rollup stays small whatever the run times).
CREATE FUNCTION attune.reporting_seconds(d interval) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN extract(epoch FROM d) < 1 THEN round(extract(epoch FROM d), 3)
                ELSE round(extract(epoch FROM d), 2 - floor(log(extract(epoch FROM d)))::integer) END
$$;

-- The p-quantile (0 to 1) of the values `vals` (ascending, distinct) each seen `counts`
-- times, interpolated between the two nearest as percentile_cont does.
CREATE FUNCTION attune.reporting_percentile(p numeric, vals numeric[], counts bigint[]) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH b AS (
        SELECT u.v, sum(u.c) OVER (ORDER BY u.i) AS upto     -- values up to and including v
          FROM unnest(vals, counts) WITH ORDINALITY AS u(v, c, i)
    ), pos AS (
        SELECT p * (max(b.upto) - 1) AS at FROM b
    )
    SELECT lo.v + (pos.at - floor(pos.at)) * (hi.v - lo.v)
      FROM pos,
           LATERAL (SELECT b.v FROM b WHERE b.upto > floor(pos.at) ORDER BY b.upto LIMIT 1) lo,
           LATERAL (SELECT b.v FROM b WHERE b.upto > ceil(pos.at) ORDER BY b.upto LIMIT 1) hi
$$;

-- The unfinished executions (requested, scheduled, running, canceling, paused), each
-- status read through its partial index: an IN list over them all matches none of those
-- indexes and reads every partition of the history. For the queue_depth view and
-- retention's search for work in flight (the caller's privileges and row-level security;
-- inlined into the caller's query).
CREATE FUNCTION attune.execution_unfinished()
RETURNS TABLE (id bigint, tenant_id bigint, status text, enforcement_id bigint,
               run_after timestamptz, created_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT e.id, e.tenant_id, e.status, e.enforcement_id, e.run_after, e.created_at
      FROM attune.execution e WHERE e.status = 'requested'
    UNION ALL
    SELECT e.id, e.tenant_id, e.status, e.enforcement_id, e.run_after, e.created_at
      FROM attune.execution e WHERE e.status = 'scheduled'
    UNION ALL
    SELECT e.id, e.tenant_id, e.status, e.enforcement_id, e.run_after, e.created_at
      FROM attune.execution e WHERE e.status IN ('running', 'canceling')
    UNION ALL
    SELECT e.id, e.tenant_id, e.status, e.enforcement_id, e.run_after, e.created_at
      FROM attune.execution e WHERE e.status = 'paused'
$$;

-- The family's cursor. A function (not a subquery) so that the planner reads its value
-- when it estimates the views (it evaluates stable functions for that): it then knows
-- that few rows lie above the cursor, instead of guessing a third of the table and
-- compiling the view's plan (JIT) for a fifth of a second.
CREATE FUNCTION attune.history_rollup_below(family text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT c.below FROM attune.history_rollup_cursor c WHERE c.family = history_rollup_below.family
$$;

-- The rows not rolled up yet, as the views read them: functions rather than views (a
-- view with security_invoker needs PostgreSQL 15; these run with the caller's privileges
-- and row-level security on every version, and are inlined into the caller's query).
CREATE FUNCTION attune.execution_unrolled()
RETURNS TABLE (id bigint, tenant_id bigint, action_ref text, rule_ref text, status text, enforcement_id bigint,
               created_at timestamptz, started_at timestamptz, finished_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT e.id, e.tenant_id, e.action_ref, e.rule_ref, e.status, e.enforcement_id,
           e.created_at, e.started_at, e.finished_at
      FROM attune.execution e
     WHERE e.id >= attune.history_rollup_below('execution')
    UNION ALL
    SELECT e.id, e.tenant_id, e.action_ref, e.rule_ref, e.status, e.enforcement_id,
           e.created_at, e.started_at, e.finished_at
      FROM attune.history_rollup_pending p JOIN attune.execution e ON e.id = p.id
     WHERE p.family = 'execution'
$$;

CREATE FUNCTION attune.event_unrolled()
RETURNS TABLE (id bigint, tenant_id bigint, trigger_id bigint, processed_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT ev.id, ev.tenant_id, ev.trigger_id, ev.processed_at
      FROM attune.event ev
     WHERE ev.id >= attune.history_rollup_below('event')
    UNION ALL
    SELECT ev.id, ev.tenant_id, ev.trigger_id, ev.processed_at
      FROM attune.history_rollup_pending p JOIN attune.event ev ON ev.id = p.id
     WHERE p.family = 'event'
$$;

-- Enforcements are final when written: never pending.
CREATE FUNCTION attune.enforcement_unrolled()
RETURNS TABLE (id bigint, tenant_id bigint, rule_id bigint)
LANGUAGE sql STABLE AS $$
    SELECT en.id, en.tenant_id, en.rule_id
      FROM attune.enforcement en
     WHERE en.id >= attune.history_rollup_below('enforcement')
$$;

-- Counts the family's rows with ids in [lo, hi) that are final, and the pending ones that
-- have become final, into the rollups; lists the others as pending. One statement, one
-- snapshot. Returns (rows counted, rows listed pending).
CREATE FUNCTION attune.history_rollup_range(family text, lo bigint, hi bigint, OUT counted bigint, OUT pended bigint)
LANGUAGE plpgsql AS $$
DECLARE
    span constant bigint := attune.history_span();
BEGIN
    IF family = 'execution' THEN
        WITH fin AS (
            SELECT e.id, e.tenant_id, e.action_ref, e.rule_ref, e.status, e.enforcement_id,
                   e.created_at, e.started_at, e.finished_at
              FROM attune.execution e
             WHERE e.id >= lo AND e.id < hi
               AND e.status IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors')
            UNION ALL
            SELECT e.id, e.tenant_id, e.action_ref, e.rule_ref, e.status, e.enforcement_id,
                   e.created_at, e.started_at, e.finished_at
              FROM attune.history_rollup_pending p JOIN attune.execution e ON e.id = p.id
             WHERE p.family = 'execution'
               AND e.status IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors')
        ), per_hour AS (
            INSERT INTO attune.execution_rollup AS r (part, tenant_id, quarter, action_ref, rule_ref, status, executions)
            SELECT f.id / span, f.tenant_id, attune.reporting_quarter(f.created_at), f.action_ref, f.rule_ref, f.status,
                   count(*)
              FROM fin f
             GROUP BY 1, 2, 3, 4, 5, 6
            ON CONFLICT (part, tenant_id, quarter, action_ref, (rule_ref IS NULL), (coalesce(rule_ref, '')), status)
            DO UPDATE SET executions = r.executions + excluded.executions
        ), duration AS (
            INSERT INTO attune.execution_duration_rollup AS r (part, tenant_id, action_ref, seconds, executions, longest)
            SELECT f.id / span, f.tenant_id, f.action_ref, attune.reporting_seconds(f.finished_at - f.started_at),
                   count(*), max(extract(epoch FROM f.finished_at - f.started_at))
              FROM fin f
             WHERE f.started_at IS NOT NULL AND f.finished_at IS NOT NULL
             GROUP BY 1, 2, 3, 4
            ON CONFLICT (part, tenant_id, action_ref, seconds)
            DO UPDATE SET executions = r.executions + excluded.executions, longest = greatest(r.longest, excluded.longest)
        ), latency AS (
            INSERT INTO attune.execution_latency_rollup AS r
                   (part, tenant_id, rule_ref, own_event, seconds, executions, total, longest)
            SELECT f.id / span, f.tenant_id, en.rule_ref,
                   coalesce(ev.tenant_id = f.tenant_id AND en.tenant_id = f.tenant_id, false),
                   attune.reporting_seconds(f.started_at - ev.created_at),
                   count(*), sum(extract(epoch FROM f.started_at - ev.created_at)),
                   max(extract(epoch FROM f.started_at - ev.created_at))
              FROM fin f
              JOIN attune.enforcement en ON en.id = f.enforcement_id
              JOIN attune.event ev ON ev.id = en.event_id
             WHERE f.started_at IS NOT NULL AND en.rule_ref IS NOT NULL
             GROUP BY 1, 2, 3, 4, 5
            ON CONFLICT (part, tenant_id, rule_ref, own_event, seconds)
            DO UPDATE SET executions = r.executions + excluded.executions, total = r.total + excluded.total,
                          longest = greatest(r.longest, excluded.longest)
        ), done AS (
            DELETE FROM attune.history_rollup_pending p USING fin f
             WHERE p.family = 'execution' AND p.id = f.id
        ), still AS (
            INSERT INTO attune.history_rollup_pending (family, id, tenant_id)
            SELECT 'execution', e.id, e.tenant_id FROM attune.execution e
             WHERE e.id >= lo AND e.id < hi
               AND e.status NOT IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors')
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM fin), (SELECT count(*) FROM still) INTO counted, pended;
    ELSIF family = 'event' THEN
        WITH fin AS (
            SELECT ev.id, ev.tenant_id, ev.trigger_id FROM attune.event ev
             WHERE ev.id >= lo AND ev.id < hi AND ev.processed_at IS NOT NULL
            UNION ALL
            SELECT ev.id, ev.tenant_id, ev.trigger_id
              FROM attune.history_rollup_pending p JOIN attune.event ev ON ev.id = p.id
             WHERE p.family = 'event' AND ev.processed_at IS NOT NULL
        ), counts AS (
            INSERT INTO attune.event_rollup AS r (part, tenant_id, trigger_id, events)
            SELECT f.id / span, f.tenant_id, f.trigger_id, count(*)
              FROM fin f
             WHERE f.trigger_id IS NOT NULL
             GROUP BY 1, 2, 3
            ON CONFLICT (part, (coalesce(tenant_id, 0)), trigger_id)
            DO UPDATE SET events = r.events + excluded.events
        ), done AS (
            DELETE FROM attune.history_rollup_pending p USING fin f
             WHERE p.family = 'event' AND p.id = f.id
        ), still AS (
            INSERT INTO attune.history_rollup_pending (family, id, tenant_id)
            SELECT 'event', ev.id, ev.tenant_id FROM attune.event ev
             WHERE ev.id >= lo AND ev.id < hi AND ev.processed_at IS NULL
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM fin), (SELECT count(*) FROM still) INTO counted, pended;
    ELSIF family = 'enforcement' THEN
        WITH fin AS (
            SELECT en.id, en.tenant_id, en.rule_id FROM attune.enforcement en
             WHERE en.id >= lo AND en.id < hi
        ), counts AS (
            INSERT INTO attune.enforcement_rollup AS r (part, tenant_id, rule_id, enforcements)
            SELECT f.id / span, f.tenant_id, f.rule_id, count(*)
              FROM fin f
             WHERE f.rule_id IS NOT NULL
             GROUP BY 1, 2, 3
            ON CONFLICT (part, tenant_id, rule_id)
            DO UPDATE SET enforcements = r.enforcements + excluded.enforcements
        )
        SELECT count(*), 0 INTO counted, pended FROM fin;
    ELSE
        RAISE EXCEPTION 'no rollup for family %', family USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Pending rows whose row is gone (its tenant deleted) would wait for ever.
    DELETE FROM attune.history_rollup_pending p
     WHERE p.family = history_rollup_range.family
       AND CASE history_rollup_range.family
               WHEN 'execution' THEN NOT EXISTS (SELECT 1 FROM attune.execution e WHERE e.id = p.id)
               ELSE NOT EXISTS (SELECT 1 FROM attune.event ev WHERE ev.id = p.id) END;
END $$;

-- One step of the rollup of a family, at most `batch` rows: moves the cursor towards its
-- next stop once every id below that stop is settled, then prepares the next stop (see
-- the top of this file). Returns the rows counted and pended, and whether the family is
-- caught up for now (the maintenance calls again while it is not). Runs as the owner
-- (reads the id sequence); the services call it. No JIT: a step's plan is costed high
-- (thousands of rows joined) and would be compiled for longer than it runs.
CREATE FUNCTION attune.history_rollup(family text, batch integer,
                                      OUT counted bigint, OUT pended bigint, OUT caught_up boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET jit = off AS $$
DECLARE
    c attune.history_rollup_cursor;
    hi bigint;
    seq_last bigint;
    seq_called boolean;
BEGIN
    counted := 0;
    pended := 0;
    caught_up := true;
    SELECT * INTO c FROM attune.history_rollup_cursor r WHERE r.family = history_rollup.family FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no rollup for family %', family USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- A stop noted in another cluster (a restored dump: transaction ids start over) or
    -- from a clock since set back would never be reached: start the stop over.
    IF c.next_xmax > pg_snapshot_xmax(pg_current_snapshot())::text::bigint OR c.next_at > clock_timestamp() THEN
        c.next_below := NULL;
        c.next_xmax := NULL;
    END IF;
    IF c.next_xmax IS NOT NULL
       AND pg_snapshot_xmin(pg_current_snapshot())::text::bigint >= c.next_xmax THEN
        EXECUTE format('SELECT id FROM attune.%I WHERE id >= $1 AND id < $2 ORDER BY id OFFSET $3 LIMIT 1', family)
           INTO hi USING c.below, c.next_below, greatest(batch, 1);
        SELECT * INTO counted, pended FROM attune.history_rollup_range(family, c.below, coalesce(hi, c.next_below));
        IF hi IS NOT NULL THEN
            UPDATE attune.history_rollup_cursor r SET below = hi WHERE r.family = c.family;
            caught_up := false;
            RETURN;
        END IF;
        c.below := c.next_below;
        c.next_below := NULL;
        c.next_xmax := NULL;
    END IF;
    IF c.next_below IS NULL THEN
        EXECUTE format('SELECT last_value, is_called FROM %s', pg_get_serial_sequence('attune.' || family, 'id'))
           INTO seq_last, seq_called;
        c.next_below := greatest(c.below, CASE WHEN seq_called THEN seq_last + 1 ELSE seq_last END);
        c.next_at := clock_timestamp();
    ELSIF c.next_xmax IS NULL AND clock_timestamp() >= c.next_at + interval '100 milliseconds' THEN
        c.next_xmax := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
    END IF;
    UPDATE attune.history_rollup_cursor r
       SET below = c.below, next_below = c.next_below, next_at = c.next_at, next_xmax = c.next_xmax
     WHERE r.family = c.family;
END $$;

REVOKE EXECUTE ON FUNCTION attune.history_rollup(text, integer),
                           attune.history_rollup_range(text, bigint, bigint) FROM PUBLIC;

-- Retention as in migration 42 (the work in flight now read through
-- attune.execution_unfinished), and the dropped partition's rows leave the rollups and the
-- pending list in the same transaction.
CREATE OR REPLACE FUNCTION attune.history_retain_at(family text, keep interval, now timestamptz)
RETURNS TABLE (partition_name text, dropped boolean, reason text)
LANGUAGE plpgsql AS $$
DECLARE
    span constant bigint := attune.history_span();
    p record;
    bound bigint;
    what text;
    t text;
BEGIN
    -- Retention and the rollup take turns (the rollup locks this row first too): a rollup
    -- step reading a partition while it is dropped could add rows for it after they are
    -- deleted below.
    PERFORM 1 FROM attune.history_rollup_cursor r WHERE r.family = history_retain_at.family FOR UPDATE;
    -- The oldest work in flight is looked up only when some partition is out of its window
    -- (most rounds none is): it reads every live status's partial index.
    IF family IN ('execution', 'enforcement', 'event')
       AND EXISTS (SELECT 1 FROM attune.history_partition h
                    WHERE h.family = history_retain_at.family AND h.closed_at < now - keep) THEN
        WITH live AS (SELECT u.id, u.enforcement_id FROM attune.execution_unfinished() u)
        SELECT CASE family
                   WHEN 'execution' THEN min(l.id)
                   WHEN 'enforcement' THEN min(l.enforcement_id)
                   ELSE LEAST(min(en.event_id),
                              (SELECT min(ev.id) FROM attune.event ev WHERE ev.processed_at IS NULL))
               END
          INTO bound
          FROM live l LEFT JOIN attune.enforcement en ON en.id = l.enforcement_id;
        what := CASE family WHEN 'execution' THEN 'an unfinished execution'
                            WHEN 'enforcement' THEN 'the enforcement of an unfinished execution'
                            ELSE 'an unprocessed event or the event of an unfinished execution' END;
    END IF;
    FOR p IN SELECT h.n FROM attune.history_partition h
              WHERE h.family = history_retain_at.family AND h.closed_at < now - keep
              ORDER BY h.n LOOP
        partition_name := family || '_p' || p.n;
        IF bound IS NOT NULL AND bound < (p.n + 1) * span THEN
            dropped := false;
            reason := format('holds %s (id %s)', what, bound);
            RETURN NEXT;
            RETURN;
        END IF;
        IF family = 'execution' THEN
            DELETE FROM attune.workflow_state w
             WHERE w.execution_id >= p.n * span AND w.execution_id < (p.n + 1) * span;
            DELETE FROM attune.inquiry i
             WHERE i.execution_id >= p.n * span AND i.execution_id < (p.n + 1) * span;
        END IF;
        -- The partition's rows leave the reporting rollups with it (migration 43).
        IF family = 'execution' THEN
            DELETE FROM attune.execution_rollup r WHERE r.part = p.n;
            DELETE FROM attune.execution_duration_rollup r WHERE r.part = p.n;
            DELETE FROM attune.execution_latency_rollup r WHERE r.part = p.n;
        ELSIF family = 'event' THEN
            DELETE FROM attune.event_rollup r WHERE r.part = p.n;
        ELSIF family = 'enforcement' THEN
            DELETE FROM attune.enforcement_rollup r WHERE r.part = p.n;
        END IF;
        DELETE FROM attune.history_rollup_pending r
         WHERE r.family = history_retain_at.family AND r.id >= p.n * span AND r.id < (p.n + 1) * span;
        FOREACH t IN ARRAY attune.history_tables(family) LOOP
            EXECUTE format('DROP TABLE IF EXISTS attune.%I', t || '_p' || p.n);
        END LOOP;
        DELETE FROM attune.history_partition h WHERE h.family = history_retain_at.family AND h.n = p.n;
        dropped := true;
        reason := NULL;
        RETURN NEXT;
    END LOOP;
END $$;

-- The reporting logins read the rollups and pending rows of their own tenant, the cursors
-- (positions of the id sequences, which every id shows anyway), and the unrolled rows
-- through the functions above (row-level security of the tables below them). The API's request role reads none of it (no policy of its own).
GRANT SELECT ON attune.history_rollup_cursor, attune.history_rollup_pending,
                attune.execution_rollup, attune.execution_duration_rollup, attune.execution_latency_rollup,
                attune.event_rollup, attune.enforcement_rollup TO attune_reporting;
ALTER TABLE attune.history_rollup_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE attune.execution_rollup ENABLE ROW LEVEL SECURITY;
ALTER TABLE attune.execution_duration_rollup ENABLE ROW LEVEL SECURITY;
ALTER TABLE attune.execution_latency_rollup ENABLE ROW LEVEL SECURITY;
ALTER TABLE attune.event_rollup ENABLE ROW LEVEL SECURITY;
ALTER TABLE attune.enforcement_rollup ENABLE ROW LEVEL SECURITY;
CREATE POLICY reporting_read ON attune.history_rollup_pending FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());
CREATE POLICY reporting_read ON attune.execution_rollup FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());
CREATE POLICY reporting_read ON attune.execution_duration_rollup FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());
CREATE POLICY reporting_read ON attune.execution_latency_rollup FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant() AND own_event);
CREATE POLICY reporting_read ON attune.event_rollup FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());
CREATE POLICY reporting_read ON attune.enforcement_rollup FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());

-- Reporting logins made before this migration plan without JIT too, as `attune reporting
-- grant` now sets (docs/reporting.md, "How the views stay fast"); where the migrating role
-- may not alter a login, it is said and left as it was.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT l.role_name FROM attune.reporting_login l
              WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = l.role_name) LOOP
        BEGIN
            EXECUTE format('ALTER ROLE %I SET jit = off', r.role_name);
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'reporting login %: not altered (run ALTER ROLE % SET jit = off)', r.role_name, r.role_name;
        END;
    END LOOP;
END $$;
