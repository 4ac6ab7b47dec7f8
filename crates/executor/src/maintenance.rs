//! Maintenance: housekeeping no request waits for, one executor at a time (a
//! transaction-level leader lock per round, like the reaper's). Today: purging expired
//! datastore items, which readers already ignore the moment they expire.

use std::time::{Duration, Instant};

use attune_core::{Context, Shutdown};
use sqlx::PgPool;

/// How often the maintenance round runs.
pub const EVERY: Duration = Duration::from_secs(30);
/// Expired items purged per statement (a round repeats while it finds a full batch).
const BATCH: i64 = 1000;

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    while !shutdown.is_cancelled() {
        if let Err(e) = round(&ctx.pool).await {
            tracing::error!(error = %e, "maintenance round failed");
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
