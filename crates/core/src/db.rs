//! The connection pool, the embedded migrations, and the database roles.
//!
//! # Roles
//! Least privilege (docs/security.md, "The database"):
//!
//! - [`OWNER_ROLE`] `attune_owner` (NOLOGIN): owns the database, schema `attune` with every
//!   object in it, and `_sqlx_migrations`. Migrations run as it: on the private cluster the
//!   superuser's connection does `SET ROLE attune_owner` ([`migrate_as_owner`]); on a server
//!   of your own, `attune migrate` with a URL naming the owner.
//! - [`SERVICE_ROLE`] `attune_service` (LOGIN, BYPASSRLS, NOINHERIT): what the services
//!   connect as. Owns nothing; may read and write the tables, use the sequences and call
//!   the functions ([`grant_service_role`]), may not update or delete audit entries; no
//!   superuser, so it can neither set `session_replication_role` nor disable triggers.
//!   BYPASSRLS because the executor, worker and sensor work across tenants.
//! - [`API_ROLE`] `attune_api` (NOLOGIN, made by migration 2): each API request's
//!   transaction switches to it (`attune_service` is a member), and row-level security
//!   confines it to the request's tenant.
//!
//! On a server named by a URL, the roles are the operator's to create
//! (docs/operations.md); [`migrate`] then grants the service role when it exists and the
//! migrating role owns the schema.

use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

/// Every migration under `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Owns the schema and its objects; migrations run as it.
pub const OWNER_ROLE: &str = "attune_owner";
/// The services' login: no superuser, owns nothing.
pub const SERVICE_ROLE: &str = "attune_service";
/// The role API requests run as, under row-level security.
pub const API_ROLE: &str = "attune_api";

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    connect_with(options.application_name("attune"), max_connections).await
}

/// Every connection plans its prepared statements once (`plan_cache_mode =
/// force_generic_plan`). The history tables are partitioned (migration 42): a generic
/// plan prunes partitions when it runs, but PostgreSQL costs it as if it read all of them,
/// so it keeps re-planning the hot path's statements for each execution instead — measured
/// at 200 webhooks/s, accepted → running p50 7.9 → 3.8 ms, and 3,962 → 4,193 executions/s
/// at full speed (docs/benchmarks.md, "History").
///
/// A connection taken from the pool is checked (a round trip) only when it sat idle for
/// [`TRUSTED_IDLE`] or longer: sqlx's default checks every one, which cost each statement
/// run on the pool a round trip of its own — a hand-off from the API to a worker to its
/// completion paid three. A connection that broke while in use is closed by sqlx on the
/// error; one that broke while idle (the server restarted) is found by the check.
pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= TRUSTED_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(options.options([("plan_cache_mode", "force_generic_plan")]))
        .await
}

/// A pooled connection used this recently is handed out without a check (HikariCP's
/// "alive bypass window" is the same idea, 500 ms).
pub const TRUSTED_IDLE: Duration = Duration::from_secs(1);

/// Applies every pending migration as the pool's role, then grants the service role what
/// it needs ([`grant_service_role`]: only when that role exists and this one owns the
/// schema). Safe to run from several processes at once: sqlx takes an advisory lock around
/// the run. When nothing is pending the migrator is not run at all, so a role that may not
/// create tables (the service role on a server of your own) starts on a migrated database.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    let mut conn = pool.acquire().await?;
    if needs_migrator(&mut conn).await? {
        MIGRATOR.run(&mut *conn).await?;
    }
    grant_service_role(&mut conn).await?;
    apply_reporting_views(&mut conn).await?;
    Ok(())
}

/// False when every embedded migration is applied, successfully and with its checksum,
/// and no other is recorded: the migrator would do nothing. Otherwise it must run (and
/// apply, or report the mismatch).
async fn needs_migrator(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let exists = sqlx::query_scalar!(r#"SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS "exists!""#)
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(true);
    }
    let applied = sqlx::query!(
        r#"SELECT version AS "version!", checksum AS "checksum!", success AS "success!" FROM _sqlx_migrations"#
    )
    .fetch_all(&mut *conn)
    .await?;
    let embedded: Vec<_> = MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).collect();
    let all_applied = embedded
        .iter()
        .all(|m| applied.iter().any(|a| a.version == m.version && a.success && a.checksum.as_slice() == &*m.checksum));
    let none_unknown = applied.iter().all(|a| embedded.iter().any(|m| m.version == a.version));
    Ok(!(all_applied && none_unknown))
}

/// Creates the roles if missing and restates their attributes and memberships (a change
/// made by hand does not survive a start), then sets the service role's password. Run by
/// the private cluster's superuser at every start.
pub async fn ensure_roles(conn: &mut PgConnection, service_password: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
DO $$
BEGIN
    -- Roles are cluster-wide: processes starting at once take turns.
    PERFORM pg_advisory_xact_lock(hashtext('attune.roles'));
    IF to_regrole('attune_api') IS NULL THEN
        CREATE ROLE attune_api NOLOGIN;
    END IF;
    IF to_regrole('attune_owner') IS NULL THEN
        CREATE ROLE attune_owner NOLOGIN;
    END IF;
    IF to_regrole('attune_service') IS NULL THEN
        CREATE ROLE attune_service LOGIN NOINHERIT BYPASSRLS;
    END IF;
    ALTER ROLE attune_api NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    -- CREATEROLE is the owner's only while migrations run (see migrate_as_owner).
    ALTER ROLE attune_owner NOLOGIN NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD NULL;
    ALTER ROLE attune_service LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS;
    -- The service switches to attune_api for API requests; the owner grants on its behalf
    -- in migrations (migration 2 grants it to the migrating role).
    IF NOT EXISTS (SELECT 1 FROM pg_auth_members
                    WHERE roleid = 'attune_api'::regrole AND member = 'attune_service'::regrole) THEN
        GRANT attune_api TO attune_service;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_auth_members
                    WHERE roleid = 'attune_api'::regrole AND member = 'attune_owner'::regrole AND admin_option) THEN
        GRANT attune_api TO attune_owner WITH ADMIN OPTION;
    END IF;
END $$"#
    )
    .execute(&mut *conn)
    .await?;
    // A password cannot be a bind parameter; this one is hex, checked by local_pg.
    assert!(
        service_password.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "the service password is checked when read"
    );
    sqlx::query(&format!("ALTER ROLE {SERVICE_ROLE} PASSWORD '{service_password}'")).execute(&mut *conn).await?;
    Ok(())
}

/// Migrates the database `conn` is connected to as [`OWNER_ROLE`], then grants the service
/// role. `conn` is the private cluster's superuser, which first hands every object of
/// schema `attune` (and `_sqlx_migrations`) to the owner — a database an earlier version
/// migrated as `postgres` — and lets only the owner create in schema `public`.
///
/// Migration 2 creates `attune_api`, which PostgreSQL refuses to a role without CREATEROLE
/// even when the role exists: the owner holds CREATEROLE while migrations run, and loses it
/// after (and at every start, should a crash have left it).
pub async fn migrate_as_owner(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::query!("SELECT pg_advisory_lock(hashtext('attune.migrate_as_owner'))").execute(&mut *conn).await?;
    let result = adopt_and_migrate(conn).await;
    let cleanup = async {
        sqlx::query!("RESET ROLE").execute(&mut *conn).await?;
        sqlx::query!("ALTER ROLE attune_owner NOCREATEROLE").execute(&mut *conn).await?;
        sqlx::query_scalar!(r#"SELECT pg_advisory_unlock(hashtext('attune.migrate_as_owner')) AS "unlocked!""#)
            .fetch_one(&mut *conn)
            .await
            .map(|_| ())
    }
    .await;
    result?;
    cleanup?;
    grant_service_role(conn).await?;
    apply_reporting_views(conn).await?;
    Ok(())
}

async fn adopt_and_migrate(conn: &mut PgConnection) -> Result<(), MigrateError> {
    sqlx::query!(
        r#"
DO $$
DECLARE
    r record;
BEGIN
    -- _sqlx_migrations lives in public: only the owner may create there.
    REVOKE CREATE ON SCHEMA public FROM PUBLIC;
    GRANT USAGE, CREATE ON SCHEMA public TO attune_owner;
    IF to_regclass('_sqlx_migrations') IS NOT NULL
       AND (SELECT relowner FROM pg_class WHERE oid = to_regclass('_sqlx_migrations')) <> 'attune_owner'::regrole THEN
        ALTER TABLE _sqlx_migrations OWNER TO attune_owner;
    END IF;
    IF to_regnamespace('attune') IS NULL THEN
        RETURN;
    END IF;
    IF (SELECT nspowner FROM pg_namespace WHERE nspname = 'attune') <> 'attune_owner'::regrole THEN
        ALTER SCHEMA attune OWNER TO attune_owner;
    END IF;
    -- The reporting views' schema and views (see apply_reporting_views).
    IF to_regnamespace('attune_reporting') IS NOT NULL THEN
        IF (SELECT nspowner FROM pg_namespace WHERE nspname = 'attune_reporting') <> 'attune_owner'::regrole THEN
            ALTER SCHEMA attune_reporting OWNER TO attune_owner;
        END IF;
        FOR r IN SELECT c.oid::regclass AS name FROM pg_class c
                  WHERE c.relnamespace = 'attune_reporting'::regnamespace AND c.relkind = 'v'
                    AND c.relowner <> 'attune_owner'::regrole LOOP
            EXECUTE format('ALTER VIEW %s OWNER TO attune_owner', r.name);
        END LOOP;
    END IF;
    -- Tables take their indexes and owned (serial) sequences with them.
    FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
              WHERE c.relnamespace = 'attune'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                AND c.relowner <> 'attune_owner'::regrole LOOP
        EXECUTE format('ALTER %s %s OWNER TO attune_owner',
                       CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.name);
    END LOOP;
    FOR r IN SELECT c.oid::regclass AS name FROM pg_class c
              WHERE c.relnamespace = 'attune'::regnamespace AND c.relkind = 'S'
                AND c.relowner <> 'attune_owner'::regrole LOOP
        EXECUTE format('ALTER SEQUENCE %s OWNER TO attune_owner', r.name);
    END LOOP;
    FOR r IN SELECT p.oid::regprocedure AS name FROM pg_proc p
              WHERE p.pronamespace = 'attune'::regnamespace AND p.proowner <> 'attune_owner'::regrole LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO attune_owner', r.name);
    END LOOP;
    -- Types of their own (enums, domains, ranges, composites); a table's row type and
    -- array types follow their owner.
    FOR r IN SELECT t.oid::regtype AS name, t.typtype FROM pg_type t
              WHERE t.typnamespace = 'attune'::regnamespace AND t.typowner <> 'attune_owner'::regrole
                AND t.typtype IN ('e', 'd', 'r', 'c') AND t.typelem = 0
                AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c') LOOP
        EXECUTE format('ALTER %s %s OWNER TO attune_owner',
                       CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.name);
    END LOOP;
END $$"#
    )
    .execute(&mut *conn)
    .await?;
    if needs_migrator(conn).await? {
        sqlx::query!("ALTER ROLE attune_owner CREATEROLE").execute(&mut *conn).await?;
        sqlx::query!("SET ROLE attune_owner").execute(&mut *conn).await?;
        MIGRATOR.run(&mut *conn).await?;
    }
    Ok(())
}

/// The reporting views of schema `attune_reporting` (docs/reporting.md), in the order they
/// are applied: each file is one `CREATE OR REPLACE VIEW` with its `COMMENT ON`s.
pub const REPORTING_VIEWS: [(&str, &str); 9] = [
    ("executions_per_hour", include_str!("../../../sql/reporting/01_executions_per_hour.sql")),
    ("action_duration", include_str!("../../../sql/reporting/02_action_duration.sql")),
    ("action_failure_rate", include_str!("../../../sql/reporting/03_action_failure_rate.sql")),
    ("rule_failure_rate", include_str!("../../../sql/reporting/04_rule_failure_rate.sql")),
    ("rule_hit_rate", include_str!("../../../sql/reporting/05_rule_hit_rate.sql")),
    ("event_to_start_latency", include_str!("../../../sql/reporting/06_event_to_start_latency.sql")),
    ("inquiry_response_times", include_str!("../../../sql/reporting/07_inquiry_response_times.sql")),
    ("worker_utilisation", include_str!("../../../sql/reporting/08_worker_utilisation.sql")),
    ("queue_depth", include_str!("../../../sql/reporting/09_queue_depth.sql")),
];

/// The group role BI logins belong to (migration 20261130000040): SELECT on the reporting
/// views and the tables they read, confined to its tenant by row-level security.
pub const REPORTING_ROLE: &str = "attune_reporting";

/// Creates or replaces every [`REPORTING_VIEWS`] view, as the owner of their schema, in
/// one transaction (an advisory lock lets processes starting at once take turns), then
/// grants [`REPORTING_ROLE`] SELECT on them. Run after the migrations at every start, so a
/// changed view file takes effect without a migration.
///
/// Does nothing when the current role may not act for that schema's owner (the service role
/// on a server of your own: `attune migrate` as the owner applies them), and on PostgreSQL
/// before 15: the views rely on `security_invoker` to read with the caller's privileges, so
/// that row-level security confines a reporting login; without it they would read as their
/// owner, which RLS does not restrict.
pub async fn apply_reporting_views(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let version: i32 =
        sqlx::query_scalar("SELECT current_setting('server_version_num')::int").fetch_one(&mut *conn).await?;
    if version < 150_000 {
        tracing::warn!(version, "the reporting views need PostgreSQL 15 or later (security_invoker); not created");
        return Ok(());
    }
    let owner: Option<String> = sqlx::query_scalar(
        "SELECT nspowner::regrole::text FROM pg_namespace
          WHERE nspname = 'attune_reporting' AND pg_has_role(current_user, nspowner, 'USAGE')",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(owner) = owner else {
        tracing::debug!("the current role may not act for the schema owner; reporting views left as they are");
        return Ok(());
    };
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('attune.reporting_views'))").execute(&mut *tx).await?;
    sqlx::raw_sql(&format!("SET LOCAL ROLE {owner}")).execute(&mut *tx).await?;
    for (name, sql) in REPORTING_VIEWS {
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(|e| {
            tracing::error!(view = name, "the reporting view does not apply: {e}");
            e
        })?;
    }
    sqlx::raw_sql(
        "DO $$ BEGIN
             IF to_regrole('attune_reporting') IS NOT NULL THEN
                 GRANT SELECT ON ALL TABLES IN SCHEMA attune_reporting TO attune_reporting;
             END IF;
         END $$",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Grants [`SERVICE_ROLE`] what the services need, on every table, sequence and function of
/// schema `attune` (and by default privileges on those the owner creates later), and
/// `SELECT` on `_sqlx_migrations` (readiness); takes back UPDATE, DELETE and TRUNCATE on the
/// audit log, and the history's partitions, partition catalog and owner-only functions
/// (migration 42). Does nothing when that role does not exist or the current role may not
/// act for the schema's owner. Idempotent, one process at a time; run after every migration.
pub async fn grant_service_role(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
DO $$
DECLARE
    owner name;
    part regclass;
BEGIN
    IF to_regrole('attune_service') IS NULL OR to_regnamespace('attune') IS NULL THEN
        RETURN;
    END IF;
    SELECT nspowner::regrole::name INTO owner FROM pg_namespace WHERE nspname = 'attune';
    IF NOT pg_has_role(current_user, owner, 'USAGE') THEN
        RETURN;
    END IF;
    -- Processes starting together take turns: two GRANTs or REVOKEs on one object at once
    -- fail ("tuple concurrently updated").
    PERFORM pg_advisory_xact_lock(hashtext('attune.grant_service_role'));
    GRANT USAGE ON SCHEMA attune TO attune_service;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA attune TO attune_service;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA attune TO attune_service;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA attune TO attune_service;
    REVOKE UPDATE, DELETE, TRUNCATE ON attune.audit_log FROM attune_service;
    -- The history's partitions are the owner's business (migration 42): the services cut
    -- and drop through attune.history_rotate/history_retain only, and reach a partition's
    -- rows through its parent only.
    IF to_regprocedure('attune.history_rotate_at(text, interval, timestamptz)') IS NOT NULL THEN
        REVOKE INSERT, UPDATE, DELETE ON attune.history_partition FROM attune_service;
        REVOKE EXECUTE ON FUNCTION attune.history_rotate_at(text, interval, timestamptz),
                                   attune.history_retain_at(text, interval, timestamptz),
                                   attune.history_create_partition(text, integer),
                                   attune.history_current(text) FROM attune_service;
        FOR part IN SELECT h.inhrelid::regclass FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhparent
                     WHERE c.relnamespace = 'attune'::regnamespace AND c.relkind = 'p' LOOP
            EXECUTE format('REVOKE ALL ON %s FROM attune_service', part);
        END LOOP;
    END IF;
    -- The reporting rollups (migration 43) likewise: written by attune.history_rollup only.
    IF to_regprocedure('attune.history_rollup(text, integer)') IS NOT NULL THEN
        REVOKE INSERT, UPDATE, DELETE ON attune.history_rollup_cursor, attune.history_rollup_pending,
               attune.execution_rollup, attune.execution_duration_rollup, attune.execution_latency_rollup,
               attune.event_rollup, attune.enforcement_rollup FROM attune_service;
        REVOKE EXECUTE ON FUNCTION attune.history_rollup_range(text, bigint, bigint) FROM attune_service;
    END IF;
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA attune
                    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO attune_service', owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA attune
                    GRANT USAGE ON SEQUENCES TO attune_service', owner);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA attune
                    GRANT EXECUTE ON FUNCTIONS TO attune_service', owner);
    IF to_regclass('_sqlx_migrations') IS NOT NULL
       AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = to_regclass('_sqlx_migrations')), 'USAGE') THEN
        GRANT SELECT ON _sqlx_migrations TO attune_service;
    END IF;
END $$"#
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// True once the database answers and every embedded migration is applied.
pub async fn is_ready(pool: &PgPool) -> bool {
    let expected = MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count() as i64;
    // sqlx creates this table at the first migration (and so does `scripts/sqlx.sh`).
    let applied = sqlx::query_scalar!(r#"SELECT count(*) AS "applied!" FROM _sqlx_migrations WHERE success"#)
        .fetch_one(pool)
        .await;
    matches!(applied, Ok(n) if n >= expected)
}

/// Takes the transaction-level leader lock `name` if no other session holds it: one
/// executor at a time does that work (the reaper, maintenance); the others skip the round.
pub async fn try_lead(tx: &mut sqlx::PgConnection, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS "leader!""#, name)
        .fetch_one(tx)
        .await
}

/// A data exception (SQLSTATE class 22): the database refused a value itself (a `\u0000`
/// in a jsonb, a number out of range), so writing it again would fail the same way.
pub fn is_data_exception(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
}

/// A connection taken out of `pool` for good, for a session whose life means something —
/// a worker's liveness lock, the bridge's publisher lock: it closes when dropped, never
/// returns to the pool, and a dead peer (host gone, network cut) ends it within ~20 s on
/// TCP (keepalives and a user timeout; ignored on Unix sockets), freeing its locks.
pub async fn session_connection(pool: &PgPool) -> Result<PgConnection, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::query!(
        r#"SELECT set_config('tcp_keepalives_idle', '5', false) AS "idle",
                  set_config('tcp_keepalives_interval', '2', false) AS "interval",
                  set_config('tcp_keepalives_count', '3', false) AS "count",
                  set_config('tcp_user_timeout', '20000', false) AS "user_timeout""#
    )
    .fetch_one(&mut conn)
    .await?;
    Ok(conn)
}

/// Creates, or resets, the LOGIN role `login` for a BI tool reporting on `tenant` (its id
/// or its name): a member of [`REPORTING_ROLE`], so it may SELECT from the reporting views
/// and nothing else, confined to that tenant by row-level security (the tenant is recorded
/// in `attune.reporting_login`, read through `attune.reporting_tenant()`). A new random
/// password is set and returned; nothing keeps it. Refuses a role that exists and is not
/// already a reporting login, so it cannot take over another role. Needs a connection that
/// may create roles (the private cluster's superuser, or an operator's role with
/// CREATEROLE that administers the group).
pub async fn grant_reporting_login(conn: &mut PgConnection, tenant: &str, login: &str) -> anyhow::Result<String> {
    use anyhow::{bail, Context as _};
    let valid = !login.is_empty()
        && login.len() <= 63
        && login.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && login.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        bail!("login {login:?} is not a valid role name: lower-case letters, digits and _, starting with a letter or _, at most 63 characters");
    }
    if login.starts_with("attune_") || login.starts_with("pg_") {
        bail!("login {login:?} is reserved: attune_* and pg_* are the system's roles");
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let group_exists: bool =
        sqlx::query_scalar("SELECT to_regrole('attune_reporting') IS NOT NULL").fetch_one(&mut *tx).await?;
    if !group_exists {
        bail!("the role attune_reporting does not exist: run `attune migrate` first");
    }
    let tenant_id: Option<i64> = sqlx::query_scalar("SELECT id FROM attune.tenant WHERE id::text = $1 OR name = $1")
        .bind(tenant)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(tenant_id) = tenant_id else { bail!("no tenant with id or name {tenant:?}") };
    // Roles are cluster-wide: processes making them take turns.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('attune.roles'))").execute(&mut *tx).await?;
    let existing: Option<bool> = sqlx::query_scalar(
        "SELECT pg_has_role(r.oid, 'attune_reporting', 'MEMBER') AND NOT r.rolsuper
           FROM pg_roles r WHERE r.rolname = $1",
    )
    .bind(login)
    .fetch_optional(&mut *tx)
    .await?;
    match existing {
        Some(false) => bail!("role {login:?} exists and is not a reporting login: choose another name"),
        Some(true) => {}
        None => {
            sqlx::raw_sql(&format!("CREATE ROLE {login} LOGIN"))
                .execute(&mut *tx)
                .await
                .context("cannot create the role")?;
        }
    }
    let password = crate::tokens::random_token(24);
    // No JIT for the login's sessions: the planner costs a view over a long history high
    // and would compile its plan for up to a second, where it runs in milliseconds
    // (docs/benchmarks.md, "Reporting views").
    // Identifiers cannot be parameters: the login is checked above, the password is base64url.
    sqlx::raw_sql(&format!(
        "ALTER ROLE {login} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
         PASSWORD '{password}';
         GRANT attune_reporting TO {login};
         ALTER ROLE {login} SET jit = off;"
    ))
    .execute(&mut *tx)
    .await
    .context("cannot set up the role")?;
    sqlx::query(
        "INSERT INTO attune.reporting_login (role_name, tenant_id) VALUES ($1, $2)
         ON CONFLICT (role_name) DO UPDATE SET tenant_id = excluded.tenant_id, updated_at = now()",
    )
    .bind(login)
    .bind(tenant_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(password)
}
