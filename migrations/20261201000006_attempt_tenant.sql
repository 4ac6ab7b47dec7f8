-- An attempt's tenant, so that the API can open an attempt in the statement that creates
-- its execution (a run handed to a free slot of a worker lane in the API's own process:
-- sql/execution/run.sql, crates/core/src/handoff.rs). The API writes as `attune_api` under
-- row-level security, and the attempts' policy `via_execution` looks for the execution,
-- which a statement does not see of its own inserts: an attempt it writes is checked
-- against its own `tenant_id` instead. Every writer sets it from now on (the claim, the
-- completion); attempts written before read it as null, and are read through their
-- execution as before. Nullable with no default: no table rewrite.
--
-- Not checked here: that `execution_id` is not another tenant's execution (the API's role
-- cannot see those; a check with the owner's rights, a SECURITY DEFINER function, cost
-- 0.2–1 ms per manual run, docs/benchmarks.md). The API writes attempts in one place, for
-- the execution the same statement inserts.
ALTER TABLE attune.execution_attempt ADD COLUMN tenant_id bigint;
COMMENT ON COLUMN attune.execution_attempt.tenant_id IS
    'The execution''s tenant (null on attempts written before 2026-12-01).';

-- Policies of one command are or-ed: reads and updates still go through the execution.
CREATE POLICY tenant_insert ON attune.execution_attempt FOR INSERT TO attune_api
    WITH CHECK (tenant_id = attune.current_tenant());
