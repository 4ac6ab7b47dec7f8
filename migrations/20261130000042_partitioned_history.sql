-- Partitioned history with retention (issue 15, docs/operations.md "History and
-- retention"). Events, enforcements, executions (with their output and attempts), the
-- change log and the audit log become range-partitioned tables, so retention drops whole
-- partitions instead of deleting rows, and the work tables' partial indexes stay as small
-- as the work in flight whatever the history holds.
--
-- Partitioned by id, cut by time. Every reader and writer finds these rows by id (the
-- claims, the completions, `GET /executions/{id}`, the change-log readers), so the
-- partition key is the id: lookups prune to one partition and the primary keys stay what
-- they were. Each partition owns a fixed id range [n * span, (n + 1) * span) (partition 0
-- starts at MINVALUE: the rows written before this migration). Time enters at the cut: when
-- a table's open partition is old enough, the maintenance task moves the table's id
-- sequence to the start of the next range (`setval`), so every row written from then on
-- lands in the next partition, and records when (`history_partition.opened_at` /
-- `closed_at`). A partition therefore holds the rows of one period; it is dropped once it
-- was closed longer ago than the table's retention. The next range is always created
-- ahead, so a late or absent maintenance task never makes an insert fail: the open
-- partition just keeps filling (its range is a billion ids).
--
-- The links between history rows (an enforcement's event, an execution's enforcement and
-- parent, output, attempts, workflow state and inquiry of an execution) are no longer
-- foreign keys: PostgreSQL checks a foreign key into a partition that is detached or
-- dropped by joining the whole partition (0.8 s for a million rows, holding the parent's
-- exclusive lock), and refuses a self-reference within it. Every writer sets them from rows
-- it just read or wrote; retention removes the rows that hung off a dropped partition
-- (workflow state, inquiries) in the same transaction, and the history rows it keeps
-- may point at rows already dropped (an enforcement whose event aged out), which readers
-- show as ids with nothing behind them.

ALTER TABLE attune.enforcement DROP CONSTRAINT enforcement_event_id_fkey,
    -- A unique index on a partitioned table must hold the partition key, so the
    -- one-enforcement-per-(rule, event) guard cannot stay. It never was what made
    -- enforcements exactly-once: the rule engine claims each event FOR UPDATE SKIP LOCKED
    -- and marks it processed in the transaction that writes its enforcements
    -- (tests/e2e/exactly_once.rs counts them under competing engines).
    DROP CONSTRAINT enforcement_rule_id_event_id_key;
ALTER TABLE attune.execution DROP CONSTRAINT execution_parent_id_fkey,
                             DROP CONSTRAINT execution_enforcement_id_fkey;
ALTER TABLE attune.execution_output DROP CONSTRAINT execution_output_execution_id_fkey;
ALTER TABLE attune.execution_attempt DROP CONSTRAINT execution_attempt_execution_id_fkey;
ALTER TABLE attune.workflow_state DROP CONSTRAINT workflow_state_execution_id_fkey;
ALTER TABLE attune.inquiry DROP CONSTRAINT inquiry_execution_id_fkey;

-- Rows per partition range. Ids stay below 2^53 (JSON numbers) for nine million cuts.
CREATE FUNCTION attune.history_span() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1000000000::bigint $$;

-- The partitioned tables of each family: the first gives the family its name and its id
-- sequence; the others (an execution's output and attempts) are partitioned on the same
-- ranges of execution ids, and created and dropped with it.
CREATE FUNCTION attune.history_tables(p_family text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_family
        WHEN 'execution' THEN ARRAY['execution', 'execution_output', 'execution_attempt']
        WHEN 'event' THEN ARRAY['event']
        WHEN 'enforcement' THEN ARRAY['enforcement']
        WHEN 'change_log' THEN ARRAY['change_log']
        WHEN 'audit_log' THEN ARRAY['audit_log']
    END
$$;

-- One row per partition number of each family.
CREATE TABLE attune.history_partition (
    family     text NOT NULL,
    n          integer NOT NULL,
    -- When the family's id sequence was moved into this range; NULL while it is only
    -- created ahead.
    opened_at  timestamptz,
    -- When the sequence moved on past it: every row in it was written before then.
    closed_at  timestamptz,
    PRIMARY KEY (family, n)
);
COMMENT ON TABLE attune.history_partition IS
    'Partitions of the history tables: partition n of a family holds ids [n * attune.history_span(), (n + 1) * attune.history_span()) (n = 0 from the lowest id), written between opened_at and closed_at.';

-- Turns `attune.<t>` into a table partitioned on `key` with the existing table as its
-- partition 0 (no data is copied): the same columns, defaults, checks, indexes (under
-- their old names) and outbound foreign keys, the same grants. Policies and triggers are
-- made below by name, as they reference other tables.
CREATE FUNCTION attune.history_partition_table(t text, key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    p0 text := t || '_p0';
    r record;
BEGIN
    FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = format('attune.%I', t)::regclass LOOP
        EXECUTE format('ALTER INDEX attune.%I RENAME TO %I', r.relname, r.relname || '_p0');
    END LOOP;
    EXECUTE format('ALTER TABLE attune.%I RENAME TO %I', t, p0);
    EXECUTE format('CREATE TABLE attune.%I (LIKE attune.%I INCLUDING ALL) PARTITION BY RANGE (%I)', t, p0, key);
    -- The id sequences belong to the parent, or dropping partition 0 would drop them.
    FOR r IN SELECT a.attname, pg_get_serial_sequence(format('attune.%I', p0), a.attname) AS seq
               FROM pg_attribute a
              WHERE a.attrelid = format('attune.%I', p0)::regclass AND a.attnum > 0 AND NOT a.attisdropped
                AND pg_get_serial_sequence(format('attune.%I', p0), a.attname) IS NOT NULL LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNED BY attune.%I.%I', r.seq, t, r.attname);
    END LOOP;
    FOR r IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
              WHERE conrelid = format('attune.%I', p0)::regclass AND contype = 'f' LOOP
        EXECUTE format('ALTER TABLE attune.%I ADD CONSTRAINT %I %s', t, r.conname, r.def);
    END LOOP;
    FOR r IN SELECT a.grantee::regrole::text AS grantee, string_agg(a.privilege_type, ', ') AS privs
               FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = format('attune.%I', p0)::regclass AND a.grantee <> c.relowner AND a.grantee <> 0
              GROUP BY a.grantee LOOP
        EXECUTE format('GRANT %s ON attune.%I TO %s', r.privs, t, r.grantee);
        -- Partitions are reached through the parent only.
        EXECUTE format('REVOKE ALL ON attune.%I FROM %s', p0, r.grantee);
    END LOOP;
    EXECUTE format('ALTER TABLE attune.%I ENABLE ROW LEVEL SECURITY', t);
    -- Partition 0 keeps no policies of its own, like the partitions made after it.
    FOR r IN SELECT polname FROM pg_policy WHERE polrelid = format('attune.%I', p0)::regclass LOOP
        EXECUTE format('DROP POLICY %I ON attune.%I', r.polname, p0);
    END LOOP;
    EXECUTE format('ALTER TABLE attune.%I DISABLE ROW LEVEL SECURITY', p0);
    EXECUTE format('ALTER TABLE attune.%I ATTACH PARTITION attune.%I FOR VALUES FROM (MINVALUE) TO (%s)',
                   t, p0, attune.history_span());
    -- The parent's indexes take the names the table's indexes had.
    FOR r IN SELECT pc.relname AS parent_index, cc.relname AS child_index
               FROM pg_index pi
               JOIN pg_class pc ON pc.oid = pi.indexrelid
               JOIN pg_inherits h ON h.inhparent = pi.indexrelid
               JOIN pg_class cc ON cc.oid = h.inhrelid
              WHERE pi.indrelid = format('attune.%I', t)::regclass LOOP
        CONTINUE WHEN r.parent_index = regexp_replace(r.child_index, '_p0$', '');
        EXECUTE format('ALTER INDEX attune.%I RENAME TO %I', r.parent_index, regexp_replace(r.child_index, '_p0$', ''));
    END LOOP;
END $$;

-- Row triggers would be cloned onto partition 0 at the attach: made again on the parent.
DROP TRIGGER with_items_parent ON attune.execution;
DROP TRIGGER audit_log_no_update ON attune.audit_log;
DROP TRIGGER audit_log_no_truncate ON attune.audit_log;

SELECT attune.history_partition_table('event', 'id');
SELECT attune.history_partition_table('enforcement', 'id');
SELECT attune.history_partition_table('execution', 'id');
SELECT attune.history_partition_table('execution_output', 'execution_id');
SELECT attune.history_partition_table('execution_attempt', 'execution_id');
SELECT attune.history_partition_table('change_log', 'id');
SELECT attune.history_partition_table('audit_log', 'id');
DROP FUNCTION attune.history_partition_table(text, text);

CREATE TRIGGER with_items_parent BEFORE INSERT ON attune.execution
    FOR EACH ROW EXECUTE FUNCTION attune.with_items_parent();
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON attune.audit_log
    FOR EACH ROW EXECUTE FUNCTION attune.audit_log_immutable();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON attune.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION attune.audit_log_immutable();

-- Policies, as 20261127000002_row_level_security and 20261130000040_reporting made them.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['event', 'enforcement', 'execution', 'audit_log', 'change_log'] LOOP
        EXECUTE format(
            'CREATE POLICY tenant_only ON attune.%I FOR ALL TO attune_api
                 USING (tenant_id = attune.current_tenant())
                 WITH CHECK (tenant_id = attune.current_tenant())', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['event', 'enforcement', 'execution'] LOOP
        EXECUTE format(
            'CREATE POLICY reporting_read ON attune.%I FOR SELECT TO attune_reporting
                 USING (tenant_id = attune.reporting_tenant())', t);
    END LOOP;
END $$;
CREATE POLICY via_execution ON attune.execution_output FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.execution e WHERE e.id = execution_id));
CREATE POLICY via_execution ON attune.execution_attempt FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.execution e WHERE e.id = execution_id));
-- This one named the old table (now partition 0).
DROP POLICY via_execution ON attune.workflow_state;
CREATE POLICY via_execution ON attune.workflow_state FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.execution e WHERE e.id = execution_id));

-- The change-message functions took the old tables' row types.
DROP FUNCTION attune.execution_change(attune.execution_p0);
DROP FUNCTION attune.event_change(attune.event_p0);
DROP FUNCTION attune.enforcement_change(attune.enforcement_p0);
CREATE FUNCTION attune.execution_change(e attune.execution) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (to_jsonb(e) - 'secret_params') || jsonb_build_object('execution_id', e.id)
$$;
CREATE FUNCTION attune.event_change(e attune.event) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_jsonb(e) || jsonb_build_object('event_id', e.id)
$$;
CREATE FUNCTION attune.enforcement_change(e attune.enforcement) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_jsonb(e) || jsonb_build_object('enforcement_id', e.id)
$$;
GRANT EXECUTE ON FUNCTION attune.execution_change(attune.execution),
                          attune.event_change(attune.event),
                          attune.enforcement_change(attune.enforcement) TO attune_api;

-- Paused executions had no index of their own (a top-level `core.ask` is paused with no
-- parent): retention's "oldest unfinished execution" reads one partial index per live
-- status, each as small as that status's rows.
CREATE INDEX execution_paused ON attune.execution (id) WHERE status = 'paused';

-- Creates partition n of every table of `family` if it is missing. Made as a table of its
-- own and attached (which locks the parent SHARE UPDATE EXCLUSIVE: writers go on), not
-- with CREATE TABLE .. PARTITION OF (ACCESS EXCLUSIVE). Storage settings (autovacuum,
-- fillfactor) are copied from partition 0's successors: a partitioned table holds none.
CREATE FUNCTION attune.history_create_partition(family text, n integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    span constant bigint := attune.history_span();
    t text;
    part text;
    opts text[];
    r record;
BEGIN
    FOREACH t IN ARRAY attune.history_tables(family) LOOP
        part := t || '_p' || n;
        CONTINUE WHEN to_regclass(format('attune.%I', part)) IS NOT NULL;
        SELECT c.reloptions INTO opts
          FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid
         WHERE h.inhparent = format('attune.%I', t)::regclass
         ORDER BY length(c.relname) DESC, c.relname DESC LIMIT 1;
        EXECUTE format('CREATE TABLE attune.%I (LIKE attune.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS) %s',
                       part, t, CASE WHEN opts IS NULL THEN '' ELSE format('WITH (%s)', array_to_string(opts, ', ')) END);
        EXECUTE format('ALTER TABLE attune.%I ATTACH PARTITION attune.%I FOR VALUES FROM (%s) TO (%s)',
                       t, part, n * span, (n + 1) * span);
        -- Reached through the parent only, whose privileges apply (the owner's default
        -- privileges would give the service role DML on it, and on the audit log's).
        FOR r IN SELECT rolname FROM pg_roles WHERE rolname IN ('attune_service', 'attune_api', 'attune_reporting') LOOP
            EXECUTE format('REVOKE ALL ON attune.%I FROM %I', part, r.rolname);
        END LOOP;
    END LOOP;
    INSERT INTO attune.history_partition (family, n) VALUES (family, n) ON CONFLICT DO NOTHING;
END $$;

-- The partition the family's id sequence is in now (its last value, or after a cut the
-- value it will give next).
CREATE FUNCTION attune.history_current(family text) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
    last bigint;
BEGIN
    EXECUTE format('SELECT last_value FROM %s', pg_get_serial_sequence('attune.' || family, 'id')) INTO last;
    RETURN (last / attune.history_span())::integer;
END $$;

-- The maintenance task's cut, for one family at `now`: makes sure the open partition and
-- the next one exist and are recorded (and every earlier one closed: ids that filled a
-- range before its time moved on by themselves); when the open partition was opened `every`
-- ago or more, moves the id sequence to the next range (closing the open one) and creates
-- the one after it ahead. Returns the open partition's number afterwards. The owner's
-- (tests pass their own `now`); the services call `history_rotate` below.
CREATE FUNCTION attune.history_rotate_at(family text, every interval, now timestamptz) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    cur integer := attune.history_current(family);
    opened timestamptz;
BEGIN
    PERFORM attune.history_create_partition(family, cur);
    PERFORM attune.history_create_partition(family, cur + 1);
    UPDATE attune.history_partition p SET opened_at = now
     WHERE p.family = history_rotate_at.family AND p.n = cur AND p.opened_at IS NULL;
    UPDATE attune.history_partition p SET closed_at = now
     WHERE p.family = history_rotate_at.family AND p.n < cur AND p.closed_at IS NULL;
    SELECT p.opened_at INTO opened FROM attune.history_partition p
     WHERE p.family = history_rotate_at.family AND p.n = cur;
    IF opened > now - every THEN
        RETURN cur;
    END IF;
    -- Forward only: the ranges were made above (an ATTACH may have waited for a lock), so
    -- the sequence is read again; had it crossed into the next range meanwhile, it has cut
    -- itself, and moving it back would hand out ids twice.
    IF attune.history_current(family) = cur THEN
        PERFORM setval(pg_get_serial_sequence('attune.' || family, 'id'), (cur + 1) * attune.history_span(), false);
    END IF;
    UPDATE attune.history_partition p SET closed_at = now
     WHERE p.family = history_rotate_at.family AND p.n <= cur AND p.closed_at IS NULL;
    UPDATE attune.history_partition p SET opened_at = now
     WHERE p.family = history_rotate_at.family AND p.n = cur + 1 AND p.opened_at IS NULL;
    PERFORM attune.history_create_partition(family, cur + 2);
    RETURN cur + 1;
END $$;

-- Retention for one family at `now`: drops, oldest first, the partitions closed more than
-- `keep` ago, and stops at the first that still holds something in flight:
-- - executions: an unfinished execution (requested, scheduled, running, canceling,
--   paused). A workflow's tasks are created after it, so they have higher ids: a partition
--   below the oldest unfinished execution holds no task of a live workflow either.
-- - enforcements: the enforcement of an unfinished execution;
-- - events: an unprocessed event, or the event of an unfinished execution.
-- Dropping an execution partition drops its output and attempts partitions and deletes the
-- workflow state and inquiries of its executions, in the same transaction.
-- Returns one row per partition looked at: dropped, or held and why.
CREATE FUNCTION attune.history_retain_at(family text, keep interval, now timestamptz)
RETURNS TABLE (partition_name text, dropped boolean, reason text)
LANGUAGE plpgsql AS $$
DECLARE
    span constant bigint := attune.history_span();
    p record;
    bound bigint;
    what text;
    t text;
BEGIN
    -- The oldest work in flight is looked up only when some partition is out of its window
    -- (most rounds none is): it reads every live status's partial index.
    IF family IN ('execution', 'enforcement', 'event')
       AND EXISTS (SELECT 1 FROM attune.history_partition h
                    WHERE h.family = history_retain_at.family AND h.closed_at < now - keep) THEN
        WITH live AS (
            SELECT e.id, e.enforcement_id FROM attune.execution e WHERE e.status = 'requested'
            UNION ALL
            SELECT e.id, e.enforcement_id FROM attune.execution e WHERE e.status = 'scheduled'
            UNION ALL
            SELECT e.id, e.enforcement_id FROM attune.execution e WHERE e.status IN ('running', 'canceling')
            UNION ALL
            SELECT e.id, e.enforcement_id FROM attune.execution e WHERE e.status = 'paused'
        )
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
        FOREACH t IN ARRAY attune.history_tables(family) LOOP
            EXECUTE format('DROP TABLE IF EXISTS attune.%I', t || '_p' || p.n);
        END LOOP;
        DELETE FROM attune.history_partition h WHERE h.family = history_retain_at.family AND h.n = p.n;
        dropped := true;
        reason := NULL;
        RETURN NEXT;
    END LOOP;
END $$;

-- Cuts and drops are DDL, which only the owner may run. The services (attune_service,
-- docs/operations.md "Least privilege") run them through the two functions below, which run
-- as the owner (security definer, pinned search path) on the server's clock and refuse a
-- retention under the table's floor (an hour of change log, a day of runs, 30 days of audit
-- log): so the service role can neither drop the open partition nor the audit log's last
-- month. Nobody else may call any of them: not the API's request role, not a reporting
-- login (functions are executable by PUBLIC unless revoked); `grant_service_role` takes the
-- owner's own ones back from the service role at every start.
CREATE FUNCTION attune.history_min_keep(family text) RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE family WHEN 'change_log' THEN interval '1 hour'
                       WHEN 'audit_log' THEN interval '30 days'
                       ELSE interval '1 day' END
$$;

CREATE FUNCTION attune.history_rotate(family text, every interval) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF attune.history_tables(family) IS NULL THEN
        RAISE EXCEPTION 'no history table family %', family USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN attune.history_rotate_at(family, greatest(every, interval '1 hour'), statement_timestamp());
END $$;

CREATE FUNCTION attune.history_retain(family text, keep interval)
RETURNS TABLE (partition_name text, dropped boolean, reason text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF attune.history_tables(family) IS NULL THEN
        RAISE EXCEPTION 'no history table family %', family USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF keep < attune.history_min_keep(family) THEN
        RAISE EXCEPTION 'the retention of % must be at least %, not %', family, attune.history_min_keep(family), keep
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY SELECT * FROM attune.history_retain_at(family, keep, statement_timestamp());
END $$;

REVOKE EXECUTE ON FUNCTION attune.history_rotate(text, interval),
                           attune.history_retain(text, interval),
                           attune.history_rotate_at(text, interval, timestamptz),
                           attune.history_retain_at(text, interval, timestamptz),
                           attune.history_create_partition(text, integer),
                           attune.history_current(text) FROM PUBLIC;

-- Partition 0 (the rows so far) is open since now; the next range exists ahead.
INSERT INTO attune.history_partition (family, n, opened_at)
SELECT f, 0, now() FROM unnest(ARRAY['event', 'enforcement', 'execution', 'change_log', 'audit_log']) f;
SELECT attune.history_create_partition(f, 1)
  FROM unnest(ARRAY['event', 'enforcement', 'execution', 'change_log', 'audit_log']) f;
