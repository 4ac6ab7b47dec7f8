-- Tenant isolation, the second time: the API runs each request's transaction as the
-- non-owner role attune_api with `attune.tenant_id` set, and these policies confine it to
-- that tenant whatever the application query says. Services that work across tenants
-- (executor, worker, sensor, notifier) run as the owner, which RLS does not restrict.

-- Roles are cluster-wide: another database of the cluster may have made it already,
-- possibly at this very moment.
DO $$
BEGIN
    CREATE ROLE attune_api NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT attune_api TO %I', current_user);
EXCEPTION WHEN duplicate_object OR unique_violation OR internal_error THEN
    NULL;
END $$;

GRANT USAGE ON SCHEMA attune TO attune_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA attune TO attune_api;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA attune TO attune_api;
REVOKE UPDATE, DELETE, TRUNCATE ON attune.audit_log FROM attune_api;
REVOKE INSERT, UPDATE, DELETE ON attune.change_log FROM attune_api;

-- The request's tenant; NULL (so nothing matches) when unset.
CREATE FUNCTION attune.current_tenant() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT NULLIF(current_setting('attune.tenant_id', true), '')::bigint
$$;
GRANT EXECUTE ON FUNCTION attune.current_tenant() TO attune_api;

-- Definitions: a tenant reads its own and the system packs' (tenant_id NULL), and writes
-- only its own.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['pack', 'action', 'trigger', 'sensor', 'rule'] LOOP
        EXECUTE format('ALTER TABLE attune.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_read ON attune.%I FOR SELECT TO attune_api
                 USING (tenant_id = attune.current_tenant() OR tenant_id IS NULL)', t);
        EXECUTE format(
            'CREATE POLICY tenant_write ON attune.%I FOR ALL TO attune_api
                 USING (tenant_id = attune.current_tenant())
                 WITH CHECK (tenant_id = attune.current_tenant())', t);
    END LOOP;
END $$;

-- Runtime records and people: the tenant's own only.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['event', 'enforcement', 'execution', 'inquiry', 'datastore_item',
                             'identity', 'audit_log', 'change_log'] LOOP
        EXECUTE format('ALTER TABLE attune.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_only ON attune.%I FOR ALL TO attune_api
                 USING (tenant_id = attune.current_tenant())
                 WITH CHECK (tenant_id = attune.current_tenant())', t);
    END LOOP;
END $$;

ALTER TABLE attune.tenant ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_self ON attune.tenant FOR ALL TO attune_api
    USING (id = attune.current_tenant()) WITH CHECK (id = attune.current_tenant());

-- Tables owned through a parent row: visible exactly when the parent is (the sub-query is
-- itself subject to the parent's policy).
ALTER TABLE attune.execution_output ENABLE ROW LEVEL SECURITY;
CREATE POLICY via_execution ON attune.execution_output FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.execution e WHERE e.id = execution_id));
ALTER TABLE attune.execution_attempt ENABLE ROW LEVEL SECURITY;
CREATE POLICY via_execution ON attune.execution_attempt FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.execution e WHERE e.id = execution_id));
ALTER TABLE attune.workflow_state ENABLE ROW LEVEL SECURITY;
CREATE POLICY via_execution ON attune.workflow_state FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.execution e WHERE e.id = execution_id));
ALTER TABLE attune.timer_state ENABLE ROW LEVEL SECURITY;
CREATE POLICY via_trigger ON attune.timer_state FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.trigger t WHERE t.id = trigger_id AND t.tenant_id = attune.current_tenant()));
ALTER TABLE attune.sensor_lease ENABLE ROW LEVEL SECURITY;
CREATE POLICY via_sensor ON attune.sensor_lease FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.sensor s WHERE s.id = sensor_id AND s.tenant_id = attune.current_tenant()));
ALTER TABLE attune.refresh_token ENABLE ROW LEVEL SECURITY;
CREATE POLICY via_identity ON attune.refresh_token FOR ALL TO attune_api
    USING (EXISTS (SELECT 1 FROM attune.identity i WHERE i.id = identity_id));
