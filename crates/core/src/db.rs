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

pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
}

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

/// Grants [`SERVICE_ROLE`] what the services need, on every table, sequence and function of
/// schema `attune` (and by default privileges on those the owner creates later), and
/// `SELECT` on `_sqlx_migrations` (readiness); takes back UPDATE, DELETE and TRUNCATE on the
/// audit log. Does nothing when that role does not exist or the current role may not act
/// for the schema's owner. Idempotent; run after every migration.
pub async fn grant_service_role(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"
DO $$
DECLARE
    owner name;
BEGIN
    IF to_regrole('attune_service') IS NULL OR to_regnamespace('attune') IS NULL THEN
        RETURN;
    END IF;
    SELECT nspowner::regrole::name INTO owner FROM pg_namespace WHERE nspname = 'attune';
    IF NOT pg_has_role(current_user, owner, 'USAGE') THEN
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA attune TO attune_service;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA attune TO attune_service;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA attune TO attune_service;
    GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA attune TO attune_service;
    REVOKE UPDATE, DELETE, TRUNCATE ON attune.audit_log FROM attune_service;
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
