//! The reaper: work held by a worker that stopped heart-beating is not left `running`
//! forever. Every few seconds (on any executor; the statement is idempotent), workers
//! silent for [`LOST_AFTER`] are marked `lost` and their running executions are scheduled
//! again when their retry policy has attempts left, else fail with
//! `failure_reason: "worker_lost"`. Executions they were canceling end `canceled` (a
//! cancel never retries).

use std::time::{Duration, Instant};

use attune_core::{Context, Shutdown};

/// Three missed heartbeats (the worker beats every 5 s).
pub const LOST_AFTER: Duration = Duration::from_secs(15);
const EVERY: Duration = Duration::from_secs(5);

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    while !shutdown.is_cancelled() {
        if let Err(e) = reap(&ctx.pool, LOST_AFTER).await {
            tracing::error!(error = %e, "reaper round failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    Ok(())
}

/// One round; returns the ids of the executions it failed, canceled or re-scheduled.
pub async fn reap(pool: &sqlx::PgPool, lost_after: Duration) -> Result<Vec<String>, sqlx::Error> {
    let started = Instant::now();
    let failed =
        sqlx::query_file_scalar!("../../sql/executor/reap.sql", lost_after.as_secs_f64()).fetch_all(pool).await?;
    tracing::debug!(rows = failed.len(), ms = started.elapsed().as_millis() as u64, "reaper round");
    if !failed.is_empty() {
        tracing::warn!(executions = failed.len(), "handled the executions of lost workers");
    }
    Ok(failed)
}
