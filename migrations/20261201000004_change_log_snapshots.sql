-- The change log keeps each row's snapshot as a value of its message type, and the JSON
-- text of a message is built when a reader reads it (issue 11: what the change log costs
-- the pipeline; measured in docs/benchmarks.md).
--
-- Until now each writing statement built the message text (`row_to_json`) for each of the
-- five change-log rows of a webhook execution: formatting every timestamp, number and
-- name, ~20 µs per execution row, and about 600 bytes of text each to store and to write to
-- the WAL, whether or not anybody ever read it. A value of the composite type
-- attune.<entity>_message is the same snapshot in PostgreSQL's binary row form: built by
-- copying the columns (~5 µs), less than half the bytes. `row_to_json` of it at read
-- time gives the very text the writers built before.
--
-- `data` is now an attune.change_data: one slot per entity type the log carries
-- (execution, event, enforcement, inquiry), and `other` for messages that are not a row
-- (rule.triggered, and tests' rows); one slot set. attune.change_json(data) is the
-- message's data as JSON text, used by the readers (sql/change_log/after.sql and
-- replay.sql).

CREATE TYPE attune.change_data AS (
    execution   attune.execution_message,
    event       attune.event_message,
    enforcement attune.enforcement_message,
    inquiry     attune.inquiry_message,
    other       json
);

-- A message that is not a row snapshot.
CREATE FUNCTION attune.change_other(d json) RETURNS attune.change_data
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ROW(NULL, NULL, NULL, NULL, d)::attune.change_data $$;

-- The message's data as JSON text (the one slot that is set). STABLE: a timestamp's text
-- depends on the session's TimeZone.
CREATE FUNCTION attune.change_json(d attune.change_data) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT COALESCE(row_to_json((d).execution), row_to_json((d).event), row_to_json((d).enforcement),
                      row_to_json((d).inquiry), (d).other) $$;

ALTER TABLE attune.change_log ALTER COLUMN data DROP DEFAULT;
ALTER TABLE attune.change_log ALTER COLUMN data TYPE attune.change_data USING attune.change_other(data);
ALTER TABLE attune.change_log ALTER COLUMN data SET DEFAULT attune.change_other('{}');

-- (Re)makes, for each entity the change log carries, the type attune.<entity>_message (the
-- row's columns in table order but the hidden ones — an execution's sealed secret
-- parameters — then `<entity>_id` = id) and attune.<entity>_change(row) RETURNS
-- attune.change_data: the row as a value of that type in its entity's slot, one
-- expression the planner inlines into the writing statement. The message types are kept
-- (the log's rows hold values of them): a column added to the table is added to its type
-- (after `<entity>_id`; rows written before read it as null), a column dropped or hidden
-- is dropped from it, and a column whose type changed is dropped and added again (rows
-- written before read it as null). A migration that changes the columns of one of these
-- tables calls this again; the test `change_log::change_rows_carry_every_column_but_the_hidden_ones`
-- compares each function with the row and fails when one is stale.
CREATE OR REPLACE FUNCTION attune.define_change_functions() RETURNS void
LANGUAGE plpgsql AS $define$
DECLARE
    entity record;
    col record;
    message text;
    kept oid;
    values_ text;
    slots text;
BEGIN
    FOR entity IN
        SELECT * FROM (VALUES ('execution', ARRAY['secret_params'], 1),
                              ('event', ARRAY[]::text[], 2),
                              ('enforcement', ARRAY[]::text[], 3),
                              ('inquiry', ARRAY[]::text[], 4)) AS e(name, hidden, slot)
    LOOP
        message := entity.name || '_message';
        IF to_regtype(format('attune.%I', message)) IS NULL THEN
            EXECUTE format('CREATE TYPE attune.%I AS ()', message);
        END IF;
        kept := (SELECT typrelid FROM pg_type WHERE oid = format('attune.%I', message)::regtype);
        -- Attributes the table no longer has as they are (dropped, hidden, retyped).
        FOR col IN
            SELECT t.attname FROM pg_attribute t
             WHERE t.attrelid = kept AND t.attnum > 0 AND NOT t.attisdropped
               AND t.attname <> entity.name || '_id'
               AND NOT EXISTS (
                    SELECT 1 FROM pg_attribute a
                     WHERE a.attrelid = format('attune.%I', entity.name)::regclass
                       AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = t.attname
                       AND a.atttypid = t.atttypid AND a.atttypmod = t.atttypmod
                       AND a.attname <> ALL (entity.hidden))
        LOOP
            EXECUTE format('ALTER TYPE attune.%I DROP ATTRIBUTE %I', message, col.attname);
        END LOOP;
        -- Columns the type does not have yet (all of them for a new type), then, for a new
        -- type, `<entity>_id`.
        FOR col IN
            SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS typ FROM pg_attribute a
             WHERE a.attrelid = format('attune.%I', entity.name)::regclass
               AND a.attnum > 0 AND NOT a.attisdropped
               AND a.attname <> ALL (entity.hidden) AND a.attname <> entity.name || '_id'
               AND NOT EXISTS (SELECT 1 FROM pg_attribute t
                                WHERE t.attrelid = kept AND t.attnum > 0 AND NOT t.attisdropped
                                  AND t.attname = a.attname)
             ORDER BY a.attnum
        LOOP
            EXECUTE format('ALTER TYPE attune.%I ADD ATTRIBUTE %I %s', message, col.attname, col.typ);
        END LOOP;
        IF NOT EXISTS (SELECT 1 FROM pg_attribute t
                        WHERE t.attrelid = kept AND NOT t.attisdropped AND t.attname = entity.name || '_id') THEN
            EXECUTE format('ALTER TYPE attune.%I ADD ATTRIBUTE %I bigint', message, entity.name || '_id');
        END IF;
        -- The row's values in the type's attribute order.
        SELECT string_agg(CASE WHEN t.attname = entity.name || '_id' THEN 'r.id' ELSE format('r.%I', t.attname) END,
                          ', ' ORDER BY t.attnum)
          INTO values_
          FROM pg_attribute t
         WHERE t.attrelid = (SELECT typrelid FROM pg_type WHERE oid = format('attune.%I', message)::regtype)
           AND t.attnum > 0 AND NOT t.attisdropped;
        SELECT string_agg(CASE WHEN n = entity.slot THEN format('ROW(%s)::attune.%I', values_, message) ELSE 'NULL' END,
                          ', ' ORDER BY n)
          INTO slots
          FROM generate_series(1, 5) n;
        EXECUTE format('DROP FUNCTION IF EXISTS attune.%I(attune.%I)', entity.name || '_change', entity.name);
        EXECUTE format('CREATE FUNCTION attune.%I(r attune.%I) RETURNS attune.change_data LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                       entity.name || '_change', entity.name,
                       format('SELECT ROW(%s)::attune.change_data', slots));
        EXECUTE format('GRANT EXECUTE ON FUNCTION attune.%I(attune.%I) TO attune_api', entity.name || '_change', entity.name);
        EXECUTE format('GRANT USAGE ON TYPE attune.%I TO attune_api', message);
    END LOOP;
END
$define$;

SELECT attune.define_change_functions();

GRANT USAGE ON TYPE attune.change_data TO attune_api;
GRANT EXECUTE ON FUNCTION attune.change_other(json), attune.change_json(attune.change_data) TO attune_api;
