-- The change log is written by the statements that make each change, in their
-- transaction (sql/**: the CTEs named `logged`), batched like them. These functions give
-- every writer the same message `data` for an entity: its full row, without what must
-- never leave the database (sealed secret parameters), plus `<entity>_id`.

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

-- The API writes its own tenant's changes (manual runs, cancels, webhook events); the
-- tenant policy's WITH CHECK keeps it to them.
GRANT INSERT ON attune.change_log TO attune_api;

-- Retention trims by age, oldest first: a BRIN index costs writers next to nothing.
CREATE INDEX change_log_created ON attune.change_log USING brin (created_at);
