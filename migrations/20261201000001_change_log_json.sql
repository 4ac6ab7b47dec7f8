-- The change log's data as `json` text, built in one pass (issue 11: what the change log
-- costs the pipeline; measured in docs/benchmarks.md).
--
-- Each change-log row carries the whole row of its entity as the message's `data` (API.md
-- "WebSocket stream"): five rows per webhook execution. As jsonb, each was built three
-- times over (`to_jsonb(row)`, a key removed, a key added: each a new copy), stored in
-- jsonb's binary form (larger than the text for these rows) and turned back into text for
-- every message a reader sent. As json it is the text the messages carry: built once,
-- stored as it is, sent as it is (the readers pass it through unparsed).
ALTER TABLE attune.change_log ALTER COLUMN data DROP DEFAULT;
ALTER TABLE attune.change_log ALTER COLUMN data TYPE json USING data::json;
ALTER TABLE attune.change_log ALTER COLUMN data SET DEFAULT '{}'::json;

DROP FUNCTION attune.execution_change(attune.execution),
              attune.event_change(attune.event),
              attune.enforcement_change(attune.enforcement),
              attune.inquiry_change(attune.inquiry);

-- (Re)makes attune.<entity>_change(row) RETURNS json for the entities the change log
-- carries: the row's columns, in table order, but the hidden ones (an execution's sealed
-- secret parameters), then `<entity>_id` (= id). Each is `row_to_json` of a composite
-- type naming those columns (attune.<entity>_message): one expression the planner inlines
-- into the writing statement, its text compact. Made from the catalogue, so a migration
-- that adds or drops a column of one of these tables calls this again; the test
-- `change_log::change_rows_carry_every_column_but_the_hidden_ones` compares each function
-- with the row as jsonb and fails when one is stale.
CREATE FUNCTION attune.define_change_functions() RETURNS void
LANGUAGE plpgsql AS $define$
DECLARE
    entity record;
    fields text;
    values_ text;
BEGIN
    FOR entity IN
        SELECT * FROM (VALUES ('execution', ARRAY['secret_params']),
                              ('event', ARRAY[]::text[]),
                              ('enforcement', ARRAY[]::text[]),
                              ('inquiry', ARRAY[]::text[])) AS e(name, hidden)
    LOOP
        SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum),
               string_agg(format('r.%I', a.attname), ', ' ORDER BY a.attnum)
          INTO fields, values_
          FROM pg_attribute a
         WHERE a.attrelid = format('attune.%I', entity.name)::regclass
           AND a.attnum > 0 AND NOT a.attisdropped
           AND a.attname <> ALL (entity.hidden) AND a.attname <> entity.name || '_id';
        EXECUTE format('DROP FUNCTION IF EXISTS attune.%I(attune.%I)', entity.name || '_change', entity.name);
        EXECUTE format('DROP TYPE IF EXISTS attune.%I', entity.name || '_message');
        EXECUTE format('CREATE TYPE attune.%I AS (%s, %I bigint)', entity.name || '_message', fields, entity.name || '_id');
        -- STABLE, not IMMUTABLE: a timestamp's text depends on the session's TimeZone.
        EXECUTE format('CREATE FUNCTION attune.%I(r attune.%I) RETURNS json LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                       entity.name || '_change', entity.name,
                       format('SELECT row_to_json(ROW(%s, r.id)::attune.%I)', values_, entity.name || '_message'));
        EXECUTE format('GRANT EXECUTE ON FUNCTION attune.%I(attune.%I) TO attune_api', entity.name || '_change', entity.name);
        EXECUTE format('GRANT USAGE ON TYPE attune.%I TO attune_api', entity.name || '_message');
    END LOOP;
END
$define$;

SELECT attune.define_change_functions();
