//! The connection pool and the embedded migrations.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Every migration under `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

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

/// Applies every pending migration. Safe to run from several processes at once: sqlx
/// takes an advisory lock around the run.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
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
