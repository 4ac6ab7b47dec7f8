//! The reaper: work held by a worker that died is never left `running`.
//!
//! A worker's liveness is its database session (it holds an advisory lock on a connection
//! of its own for its whole life; see `attune_worker::registry`), so a killed worker is
//! found within [`EVERY`] of its session ending: marked `lost`, its running executions
//! scheduled again when their retry policy has attempts left or failed with
//! `failure_reason: "worker_lost"`, the ones being canceled `canceled` (a cancel never
//! retries), and its running attempts closed as `lost` — all in one statement
//! (`attune_core::lost_workers`). A worker whose session lives but which stopped
//! heart-beating for [`STALE_AFTER`] (a hung process) is lost too.
//!
//! One reaper works at a time across executors: each round first tries a transaction-level
//! leader lock and skips the round when another executor holds it.

use std::time::{Duration, Instant};

pub use attune_core::lost_workers::STALE_AFTER;
use attune_core::lost_workers::{self, Scope};
use attune_core::wakeup::Channel;
use attune_core::{Context, Shutdown};
use sqlx::PgPool;

/// How often the reaper looks: the bound on how long a dead worker's executions wait.
/// The check is one small statement over the active workers and `pg_locks`.
pub const EVERY: Duration = Duration::from_millis(500);

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let changes = ctx.notifier.hint(Channel::Change);
    while !shutdown.is_cancelled() {
        match round(&ctx.pool, STALE_AFTER).await {
            Ok(moved) if !moved.is_empty() => changes.poke(),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "reaper round failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    tracing::info!("reaper stopped");
    Ok(())
}

/// One round, if this executor is the reaper now; returns the ids of the executions it
/// moved on (none when another executor is reaping).
pub async fn round(pool: &PgPool, stale_after: Duration) -> Result<Vec<String>, sqlx::Error> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let leader = attune_core::db::try_lead(&mut tx, "attune.reaper").await?;
    if !leader {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let moved = lost_workers::reap(&mut tx, stale_after, Scope::default()).await?;
    tx.commit().await?;
    tracing::debug!(rows = moved.len(), ms = started.elapsed().as_millis() as u64, "reaper round");
    if !moved.is_empty() {
        tracing::warn!(executions = moved.len(), "handled the executions of lost workers");
    }
    Ok(moved)
}

/// One round regardless of the leader lock (tests).
pub async fn reap(pool: &PgPool, stale_after: Duration) -> Result<Vec<String>, sqlx::Error> {
    lost_workers::reap(&mut *pool.acquire().await?, stale_after, Scope::default()).await
}
