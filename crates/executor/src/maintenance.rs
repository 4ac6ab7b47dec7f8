//! Maintenance: housekeeping no request waits for, one executor at a time (a
//! transaction-level leader lock per batch, like the reaper's): purging expired datastore
//! items, which readers already ignore the moment they expire, and trimming the change log
//! to its retention (`notifier.retention_hours`: how far back a WebSocket `since` replays).

use std::time::{Duration, Instant};

use attune_core::{change_log, Context, Shutdown};
use sqlx::PgPool;

/// How often the maintenance round runs.
pub const EVERY: Duration = Duration::from_secs(30);
/// Expired items purged per statement (a round repeats while it finds a full batch).
const BATCH: i64 = 1000;
/// Change-log rows deleted per statement. Each batch is its own short statement, so
/// readers and writers of the log are never held up by a long delete.
const TRIM_BATCH: i64 = 5000;

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let retention_seconds = ctx.config.notifier.retention_hours.saturating_mul(3600).min(i64::MAX as u64) as i64;
    while !shutdown.is_cancelled() {
        if let Err(e) = round(&ctx.pool).await {
            tracing::error!(error = %e, "maintenance round failed");
        }
        if let Err(e) = trim_change_log(&ctx.pool, retention_seconds, &shutdown).await {
            tracing::error!(error = %e, "change-log trim failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    tracing::debug!("maintenance stopped");
    Ok(())
}

/// One round, if no other executor is doing it; returns how many items it purged.
pub async fn round(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let started = Instant::now();
    let mut purged = 0;
    loop {
        let mut tx = pool.begin().await?;
        let leader = attune_core::db::try_lead(&mut tx, "attune.maintenance").await?;
        if !leader {
            tx.commit().await?;
            return Ok(purged);
        }
        let done = sqlx::query_file!("../../sql/executor/purge_expired.sql", BATCH).execute(&mut *tx).await?;
        tx.commit().await?;
        purged += done.rows_affected();
        if done.rows_affected() < BATCH as u64 {
            break;
        }
    }
    tracing::debug!(rows = purged, ms = started.elapsed().as_millis() as u64, "maintenance round");
    Ok(purged)
}

/// Deletes the change-log rows older than `retention_seconds`, in batches of
/// [`TRIM_BATCH`], if no other executor is doing it; returns how many. Stops early at
/// `shutdown` (the next round goes on).
pub async fn trim_change_log(pool: &PgPool, retention_seconds: i64, shutdown: &Shutdown) -> Result<u64, sqlx::Error> {
    let started = Instant::now();
    let mut trimmed = 0;
    while !shutdown.is_cancelled() {
        // The lock is held by `tx` while the batch runs on another connection of the pool
        // (`change_log::trim` takes the pool); it goes with the commit.
        let mut tx = pool.begin().await?;
        let leader = attune_core::db::try_lead(&mut tx, "attune.maintenance.change_log").await?;
        if !leader {
            tx.commit().await?;
            break;
        }
        let done = change_log::trim(pool, retention_seconds, TRIM_BATCH).await;
        tx.commit().await?;
        let done = done?;
        trimmed += done;
        if done < TRIM_BATCH as u64 {
            break;
        }
    }
    if trimmed > 0 {
        tracing::debug!(rows = trimmed, ms = started.elapsed().as_millis() as u64, "change log trimmed");
    }
    Ok(trimmed)
}
