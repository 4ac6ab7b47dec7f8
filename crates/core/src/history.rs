//! Partitioned history and its retention (migration `20261130000042_partitioned_history`,
//! docs/operations.md "History and retention").
//!
//! Events, enforcements, executions (with their output and attempts), the change log and
//! the audit log are partitioned on id ranges, cut by time: [`rotate`] moves a family's id
//! sequence to the next range once its open partition is [`Policy::every`] old, and
//! [`retain`] drops the partitions closed longer ago than the family's retention — whole
//! tables, never row by row — stopping at the first that still holds work in flight.
//! [`maintain`] does both for every family, one executor at a time; [`rollup`] keeps the
//! reporting views' rollups, partition by partition.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use crate::config::Config;

pub mod rollup;

/// The partitioned table families (`attune.history_tables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Executions, with their output and attempts.
    Execution,
    Event,
    Enforcement,
    ChangeLog,
    AuditLog,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Execution => "execution",
            Family::Event => "event",
            Family::Enforcement => "enforcement",
            Family::ChangeLog => "change_log",
            Family::AuditLog => "audit_log",
        }
    }
}

/// How long one family's history is kept (`None`: for good).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub family: Family,
    pub keep: Option<Duration>,
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

impl Policy {
    /// Every family's policy from `history.*` and `notifier.retention_hours`.
    pub fn from_config(config: &Config) -> Vec<Policy> {
        let days = |d: u64| (d > 0).then(|| DAY * d.min(100_000) as u32);
        let h = &config.history;
        vec![
            Policy { family: Family::Execution, keep: days(h.executions_days) },
            Policy { family: Family::Enforcement, keep: days(h.enforcements_days) },
            Policy { family: Family::Event, keep: days(h.events_days) },
            Policy {
                family: Family::ChangeLog,
                keep: Some(HOUR * config.notifier.retention_hours.clamp(1, 10_000_000) as u32),
            },
            Policy { family: Family::AuditLog, keep: days(h.audit_log_days) },
        ]
    }

    /// How long each partition stays open: half the retention, at least an hour, at most
    /// 15 days — so a table holds three or four partitions (each one costs every statement
    /// on the table a little, whatever it holds: docs/benchmarks.md, "History"), and a row
    /// outlives its retention by at most this much (plus a maintenance round).
    pub fn every(&self) -> Duration {
        self.keep.map_or(15 * DAY, |keep| (keep / 2).clamp(HOUR, 15 * DAY))
    }
}

/// What retention did with one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub partition: String,
    pub dropped: bool,
    /// Why a partition out of its window was kept.
    pub reason: Option<String>,
}

/// Cuts `family` if its open partition was opened `every` ago or more, and makes sure the
/// next range exists ahead; returns the open partition's number afterwards. On the
/// server's clock, or at `at` (the owner's only: tests move time forward).
pub async fn rotate(
    conn: &mut PgConnection,
    family: Family,
    every: Duration,
    at: Option<DateTime<Utc>>,
) -> Result<i32, sqlx::Error> {
    let (name, every) = (family.as_str(), every.as_secs_f64());
    match at {
        None => sqlx::query_file_scalar!("../../sql/history/rotate.sql", name, every).fetch_one(conn).await,
        Some(at) => sqlx::query_file_scalar!("../../sql/history/rotate_at.sql", name, every, at).fetch_one(conn).await,
    }
}

/// Drops `family`'s partitions closed more than `keep` ago, oldest first, up to the first
/// that holds work in flight (returned with why it is kept). On the server's clock, or at
/// `at` (the owner's only).
pub async fn retain(
    conn: &mut PgConnection,
    family: Family,
    keep: Duration,
    at: Option<DateTime<Utc>>,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let (name, keep) = (family.as_str(), keep.as_secs_f64());
    match at {
        None => sqlx::query_file_as!(Outcome, "../../sql/history/retain.sql", name, keep).fetch_all(conn).await,
        Some(at) => {
            sqlx::query_file_as!(Outcome, "../../sql/history/retain_at.sql", name, keep, at).fetch_all(conn).await
        }
    }
}

/// What one [`maintain`] did.
#[derive(Debug, Default)]
pub struct Report {
    /// Each family cut, with its open partition afterwards.
    pub open: Vec<(Family, i32)>,
    pub outcomes: Vec<Outcome>,
    /// Families skipped because another executor holds the lead or a lock was not had in
    /// time (the next round tries again).
    pub skipped: Vec<Family>,
    /// Families whose cut or retention failed, with the error (the others still ran).
    pub failed: Vec<(Family, String)>,
}

/// How long the maintenance waits for a table lock. A cut attaches a partition and a drop
/// locks its parent exclusively for a moment; a statement queued behind a long
/// transaction would hold up everyone queued behind it, so the maintenance gives up instead
/// and the next round retries.
const LOCK_TIMEOUT: &str = "1s";

/// Cuts and trims every family, each step its own short transaction under the maintenance
/// leader lock (one executor at a time). On the server's clock, or at `at` (the owner's
/// only: tests). A family that fails is reported and the others go on.
pub async fn maintain(pool: &PgPool, policies: &[Policy], at: Option<DateTime<Utc>>) -> Report {
    let mut report = Report::default();
    for policy in policies {
        match maintain_one(pool, policy, at).await {
            Ok(Some((open, outcomes))) => {
                report.open.push((policy.family, open));
                report.outcomes.extend(outcomes);
            }
            Ok(None) => report.skipped.push(policy.family),
            Err(e) => report.failed.push((policy.family, e.to_string())),
        }
    }
    report
}

/// One family's cut, then its retention; `None` when skipped (not the leader, or a lock
/// busy).
async fn maintain_one(
    pool: &PgPool,
    policy: &Policy,
    at: Option<DateTime<Utc>>,
) -> Result<Option<(i32, Vec<Outcome>)>, sqlx::Error> {
    let Some(mut tx) = lead(pool).await? else { return Ok(None) };
    let open = match rotate(&mut tx, policy.family, policy.every(), at).await {
        Err(e) if lock_not_available(&e) => return Ok(None),
        done => done?,
    };
    tx.commit().await?;
    let Some(keep) = policy.keep else { return Ok(Some((open, Vec::new()))) };
    let Some(mut tx) = lead(pool).await? else { return Ok(None) };
    let outcomes = match retain(&mut tx, policy.family, keep, at).await {
        Err(e) if lock_not_available(&e) => return Ok(None),
        done => done?,
    };
    tx.commit().await?;
    Ok(Some((open, outcomes)))
}

/// A transaction holding the history maintenance's leader lock, with [`LOCK_TIMEOUT`];
/// `None` when another executor leads.
async fn lead(pool: &PgPool) -> Result<Option<sqlx::Transaction<'static, sqlx::Postgres>>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if !crate::db::try_lead(&mut tx, "attune.maintenance.history").await? {
        tx.commit().await?;
        return Ok(None);
    }
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")).execute(&mut *tx).await?;
    Ok(Some(tx))
}

fn lock_not_available(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "55P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_last_half_the_retention_within_an_hour_and_15_days() {
        let p = |keep: Option<Duration>| Policy { family: Family::Event, keep }.every();
        assert_eq!(p(Some(DAY * 30)), 15 * DAY);
        assert_eq!(p(Some(DAY * 365)), 15 * DAY);
        assert_eq!(p(Some(DAY * 8)), 4 * DAY);
        assert_eq!(p(Some(HOUR * 24)), 12 * HOUR);
        assert_eq!(p(Some(HOUR * 1)), HOUR);
        assert_eq!(p(None), 15 * DAY);
    }
}
