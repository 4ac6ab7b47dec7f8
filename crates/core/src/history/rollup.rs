//! The reporting rollups (migration `20261130000043_reporting_rollups`, docs/reporting.md
//! "How the views stay fast"): a finished execution, a processed event and an enforcement
//! never change again, so each is counted once into small per-partition rollup tables,
//! and the views of `attune_reporting` read the rollups plus the rows not counted yet.
//! [`roll_up`] advances every family under the history maintenance's leader lock, in
//! steps of at most [`BATCH`] rows, each its own short transaction; the executor's
//! maintenance runs it every few seconds, so the rows the views still read from the
//! tables are those of the last few seconds and the work in flight.

use std::time::{Duration, Instant};

use sqlx::PgPool;

use super::{lead, Family};

/// The families the views count.
pub const FAMILIES: [Family; 3] = [Family::Execution, Family::Event, Family::Enforcement];

/// Rows per step (one transaction): a catch-up over a long history (the first round after
/// an upgrade) proceeds in steps like this one, never in one long transaction.
pub const BATCH: i32 = 50_000;

/// What one [`roll_up`] did for a family.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rolled {
    /// Finished rows counted into the rollups.
    pub counted: i64,
    /// Rows left pending (still in flight when their turn came).
    pub pended: i64,
    /// False when the round's time ran out before the family was caught up.
    pub caught_up: bool,
}

/// The cursor moves in three steps a moment apart (note the sequence's position; at least
/// [`GRACE`] later, a transaction id assigned then, the step's own (migration
/// `20261130000044_rollup_horizon`); once the oldest running transaction is past it,
/// move): one [`roll_up`] takes all three, so a row waits for the next round at most.
const STEPS: usize = 3;
/// Between two steps (the change log's `GAP_GRACE`, for the same reason: a writer takes
/// its id a moment before its transaction id).
pub const GRACE: Duration = crate::change_log::GAP_GRACE;

/// Rolls every family up as far as it can go now, for at most `budget` (the rest waits for
/// the next round). Per family: `Ok(None)` when another executor leads, `Err` when a step
/// failed (the other families go on).
pub async fn roll_up(pool: &PgPool, budget: Duration) -> Vec<(Family, Result<Option<Rolled>, sqlx::Error>)> {
    let started = Instant::now();
    let mut out: Vec<(Family, Result<Option<Rolled>, sqlx::Error>)> =
        FAMILIES.iter().map(|&f| (f, Ok(Some(Rolled::default())))).collect();
    for step in 0..STEPS {
        if step > 0 {
            tokio::time::sleep(GRACE).await;
        }
        for (family, outcome) in out.iter_mut() {
            let Ok(Some(sum)) = outcome else { continue };
            match advance(pool, *family, sum, started, budget).await {
                Ok(true) => {}
                Ok(false) => *outcome = Ok(None),
                Err(e) => *outcome = Err(e),
            }
        }
        if started.elapsed() >= budget {
            break;
        }
    }
    out
}

/// One family's step, in batches while it is not caught up and the budget lasts; false
/// when another executor leads.
async fn advance(
    pool: &PgPool,
    family: Family,
    sum: &mut Rolled,
    started: Instant,
    budget: Duration,
) -> Result<bool, sqlx::Error> {
    loop {
        let Some(mut tx) = lead(pool).await? else { return Ok(false) };
        let done =
            sqlx::query_file!("../../sql/history/rollup.sql", family.as_str(), BATCH).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        sum.counted += done.counted;
        sum.pended += done.pended;
        sum.caught_up = done.caught_up;
        if done.caught_up || started.elapsed() >= budget {
            return Ok(true);
        }
    }
}
