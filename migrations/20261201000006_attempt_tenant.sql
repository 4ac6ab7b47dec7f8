-- An attempt's tenant, so that the API can open an attempt in the statement that creates
-- its execution (a run handed to a free slot of a worker lane in the API's own process:
-- sql/execution/run.sql, crates/core/src/handoff.rs). The API writes as `attune_api` under
-- row-level security, and the attempts' policy `via_execution` looks for the execution,
-- which a statement does not see of its own inserts: an attempt it writes is checked
-- against its own `tenant_id` instead, and against the execution's tenant where that
-- execution is already there (committed before the statement). Every writer sets it from
-- now on (the claim, the completion); attempts written before read it as null, and are
-- read through their execution as before. Nullable with no default: no table rewrite.
ALTER TABLE attune.execution_attempt ADD COLUMN tenant_id bigint;
COMMENT ON COLUMN attune.execution_attempt.tenant_id IS
    'The execution''s tenant (null on attempts written before 2026-12-01).';

-- Whether execution `id` is not another tenant's than `tenant`: true when it is that
-- tenant's, or not there (yet) for the caller's statement. Owner's rights: it sees every
-- tenant's executions, which the API's role does not.
CREATE FUNCTION attune.execution_not_elsewhere(id bigint, tenant bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT NOT EXISTS (SELECT 1 FROM attune.execution e WHERE e.id = $1 AND e.tenant_id IS DISTINCT FROM $2)
$$;
REVOKE ALL ON FUNCTION attune.execution_not_elsewhere(bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION attune.execution_not_elsewhere(bigint, bigint) TO attune_api;

-- Policies of one command are or-ed: reads and updates still go through the execution.
CREATE POLICY tenant_insert ON attune.execution_attempt FOR INSERT TO attune_api
    WITH CHECK (tenant_id = attune.current_tenant() AND attune.execution_not_elsewhere(execution_id, tenant_id));
