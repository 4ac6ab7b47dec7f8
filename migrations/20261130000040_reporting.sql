-- Reporting (issue 15): schema attune_reporting holds views for BI tools (sql/reporting/,
-- created or replaced at every start after the migrations, see attune_core::db). This
-- migration makes what those views and their readers stand on:
--
-- - the group role attune_reporting (NOLOGIN): `attune reporting grant` makes one LOGIN
--   role per BI tool, a member of it, and records its tenant in attune.reporting_login;
-- - read-only privileges: SELECT on the base tables the views read (the views run with
--   the caller's privileges, security_invoker), nothing else anywhere;
-- - RLS policies confining that group to its tenant, as attune_api is confined
--   (migration 20261127000002), but FOR SELECT only: with no write privilege and no write
--   policy, INSERT/UPDATE/DELETE are refused twice over.
--
-- Why not `ALTER ROLE login SET attune.tenant_id` and attune.current_tenant(), as for
-- attune_api: a custom setting is anyone's to change, and a BI login runs its own SQL — it
-- could `SET attune.tenant_id` to another tenant. The API is safe because the service, not
-- the user, writes every statement. Here the tenant is looked up from the session's login
-- (session_user, which only a superuser can change) in a table the login cannot write.

-- Roles are cluster-wide: another database of the cluster may have made it already.
DO $$
BEGIN
    CREATE ROLE attune_reporting NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

-- The migrating role administers the group, so `attune reporting grant` (run as that role)
-- may add logins to it.
DO $$
BEGIN
    EXECUTE format('GRANT attune_reporting TO %I WITH ADMIN OPTION', current_user);
EXCEPTION WHEN duplicate_object OR unique_violation OR internal_error OR invalid_grant_operation THEN
    NULL;
END $$;

-- Which tenant each BI login reports on. Written by `attune reporting grant` only.
CREATE TABLE attune.reporting_login (
    role_name   text PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES attune.tenant (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The session login's tenant; NULL (so nothing matches) for any other session. Security
-- definer so the login needs no privilege on reporting_login; the search path is pinned.
CREATE FUNCTION attune.reporting_tenant() RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT tenant_id FROM attune.reporting_login WHERE role_name = session_user::text
$$;
REVOKE EXECUTE ON FUNCTION attune.reporting_tenant() FROM PUBLIC;

CREATE SCHEMA IF NOT EXISTS attune_reporting;
GRANT USAGE ON SCHEMA attune_reporting TO attune_reporting;
GRANT USAGE ON SCHEMA attune TO attune_reporting;
GRANT EXECUTE ON FUNCTION attune.reporting_tenant() TO attune_reporting;
-- Only the tables the views read; worker rows are shared infrastructure (no tenant data).
GRANT SELECT ON attune.tenant, attune.action, attune.rule, attune.event, attune.enforcement,
                attune.execution, attune.inquiry, attune.worker TO attune_reporting;

-- Definitions: the tenant's own and the system packs' (tenant_id NULL).
CREATE POLICY reporting_read ON attune.action FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant() OR tenant_id IS NULL);
CREATE POLICY reporting_read ON attune.rule FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant() OR tenant_id IS NULL);
-- Runtime records: the tenant's own only.
CREATE POLICY reporting_read ON attune.event FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());
CREATE POLICY reporting_read ON attune.enforcement FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());
CREATE POLICY reporting_read ON attune.execution FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());
CREATE POLICY reporting_read ON attune.inquiry FOR SELECT TO attune_reporting
    USING (tenant_id = attune.reporting_tenant());
CREATE POLICY reporting_read ON attune.tenant FOR SELECT TO attune_reporting
    USING (id = attune.reporting_tenant());
