-- History rows name their tenant and definitions by id, without foreign keys (issue 13,
-- write amplification; measured in docs/benchmarks.md).
--
-- A foreign key is checked on every insert (and on every update that sets it) by a query
-- of its own that locks the referenced row FOR KEY SHARE. On the hot path that was nine
-- such checks per webhook execution (the event's tenant and trigger, the enforcement's
-- tenant and rule, the execution's tenant, action and rule, the claim's worker, the
-- attempt's worker), and the rows they lock are the same few for every concurrent
-- transaction (one tenant, one rule, one worker), so PostgreSQL shares each lock through a
-- MultiXact (its own SLRU and WAL). Without them the pipeline's throughput rose by a fifth.
--
-- Every writer sets these ids from rows it has just read, as it does the links between
-- history rows (an enforcement's event, an execution's parent: ids since
-- 20261130000042_partitioned_history.sql). What the keys did on a delete is done by the
-- triggers below, once per deleting statement: a deleted tenant's history goes with it, a
-- deleted trigger, rule, action, identity or worker leaves its history rows with the id
-- cleared. One race is no longer closed: a row written by a transaction that commits
-- while the definition it names is deleted keeps the id; readers join definitions with
-- LEFT JOIN and see a missing one as deleted, as they see a cleared id.

ALTER TABLE attune.event
    DROP CONSTRAINT event_tenant_id_fkey,
    DROP CONSTRAINT event_trigger_id_fkey;
ALTER TABLE attune.enforcement
    DROP CONSTRAINT enforcement_tenant_id_fkey,
    DROP CONSTRAINT enforcement_rule_id_fkey;
ALTER TABLE attune.execution
    DROP CONSTRAINT execution_tenant_id_fkey,
    DROP CONSTRAINT execution_action_id_fkey,
    DROP CONSTRAINT execution_rule_id_fkey,
    DROP CONSTRAINT execution_requested_by_fkey,
    DROP CONSTRAINT execution_worker_id_fkey;
ALTER TABLE attune.execution_attempt
    DROP CONSTRAINT execution_attempt_worker_id_fkey;

-- The keys' ON DELETE actions, for the rows one statement deleted (`gone`). Runs as the
-- owner, as the keys' actions did, so a tenant-scoped role's delete reaches every row.
CREATE FUNCTION attune.history_forget_deleted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = attune, pg_temp AS $$
BEGIN
    CASE TG_TABLE_NAME
    WHEN 'tenant' THEN
        DELETE FROM attune.event WHERE tenant_id IN (SELECT id FROM gone);
        DELETE FROM attune.enforcement WHERE tenant_id IN (SELECT id FROM gone);
        DELETE FROM attune.execution WHERE tenant_id IN (SELECT id FROM gone);
    WHEN 'trigger' THEN
        UPDATE attune.event SET trigger_id = NULL WHERE trigger_id IN (SELECT id FROM gone);
    WHEN 'rule' THEN
        UPDATE attune.enforcement SET rule_id = NULL WHERE rule_id IN (SELECT id FROM gone);
        UPDATE attune.execution SET rule_id = NULL WHERE rule_id IN (SELECT id FROM gone);
    WHEN 'action' THEN
        UPDATE attune.execution SET action_id = NULL WHERE action_id IN (SELECT id FROM gone);
    WHEN 'identity' THEN
        UPDATE attune.execution SET requested_by = NULL WHERE requested_by IN (SELECT id FROM gone);
    WHEN 'worker' THEN
        UPDATE attune.execution SET worker_id = NULL WHERE worker_id IN (SELECT id FROM gone);
        UPDATE attune.execution_attempt SET worker_id = NULL WHERE worker_id IN (SELECT id FROM gone);
    END CASE;
    RETURN NULL;
END $$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant', 'trigger', 'rule', 'action', 'identity', 'worker'] LOOP
        EXECUTE format(
            'CREATE TRIGGER history_links AFTER DELETE ON attune.%I REFERENCING OLD TABLE AS gone
                 FOR EACH STATEMENT EXECUTE FUNCTION attune.history_forget_deleted()', t);
    END LOOP;
END $$;
