//! Maintenance: housekeeping no request waits for, one executor at a time (a
//! transaction-level leader lock per batch, like the reaper's): purging expired datastore
//! items, which readers already ignore the moment they expire, and the partitioned
//! history's cuts and retention ([`attune_core::history`]: whole partitions dropped once
//! out of their window, nothing in flight ever) and the reporting views' rollups
//! ([`attune_core::history::rollup`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use attune_core::history::{self, Family, Policy};
use attune_core::{Context, Shutdown};
use sqlx::PgPool;

/// How often the maintenance round runs.
pub const EVERY: Duration = Duration::from_secs(30);
/// How often the reporting rollups advance: the views read the rows not rolled up yet from
/// the tables, so the rollup keeps close behind the history (a finished row waits one of
/// these at most: attune_core::history::rollup).
const ROLLUP_EVERY: Duration = Duration::from_secs(5);
/// How long one rollup may take (a long catch-up goes on at the next).
const ROLLUP_BUDGET: Duration = Duration::from_secs(4);
/// Expired items purged per statement (a round repeats while it finds a full batch).
const BATCH: i64 = 1000;

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let policies = Policy::from_config(&ctx.config);
    let mut history = HistoryLog::default();
    let mut last_round: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        if last_round.is_none_or(|at| at.elapsed() >= EVERY) {
            last_round = Some(Instant::now());
            if let Err(e) = round(&ctx.pool).await {
                tracing::error!(error = %e, "maintenance round failed");
            }
            history.record(&history::maintain(&ctx.pool, &policies, None).await);
        }
        let rolling = Instant::now();
        for (family, outcome) in history::rollup::roll_up(&ctx.pool, ROLLUP_BUDGET).await {
            match outcome {
                Ok(Some(rolled)) if rolled.counted > 0 || !rolled.caught_up => tracing::debug!(
                    table = family.as_str(),
                    counted = rolled.counted,
                    pending = rolled.pended,
                    caught_up = rolled.caught_up,
                    "reporting rollup"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(table = family.as_str(), error = %e, "reporting rollup failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(ROLLUP_EVERY.saturating_sub(rolling.elapsed())) => {}
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

/// Says what the history maintenance changed: a cut, a dropped partition, a partition kept
/// past its window (once, not every round).
#[derive(Default)]
struct HistoryLog {
    open: HashMap<Family, i32>,
    held: HashMap<String, String>,
}

impl HistoryLog {
    fn record(&mut self, report: &history::Report) {
        for &(family, open) in &report.open {
            if let Some(before) = self.open.insert(family, open) {
                if before != open {
                    tracing::info!(table = family.as_str(), partition = open, "history: new partition opened");
                }
            }
        }
        for outcome in &report.outcomes {
            match (&outcome.reason, outcome.dropped) {
                (_, true) => {
                    self.held.remove(&outcome.partition);
                    tracing::info!(partition = %outcome.partition, "history: partition out of its retention dropped");
                }
                (Some(reason), false) => {
                    if self.held.get(&outcome.partition) != Some(reason) {
                        tracing::info!(partition = %outcome.partition, %reason, "history: partition kept past its retention");
                        self.held.insert(outcome.partition.clone(), reason.clone());
                    }
                }
                (None, false) => {}
            }
        }
        for (family, error) in &report.failed {
            tracing::error!(table = family.as_str(), %error, "history maintenance failed; the next round retries");
        }
        let skipped: Vec<&str> = report.skipped.iter().copied().map(Family::as_str).collect();
        if !skipped.is_empty() {
            tracing::debug!(tables = ?skipped, "history maintenance skipped (another executor leads, or a lock was busy)");
        }
    }
}
