//! The claim: up to the free slots' worth of scheduled executions, marked `running` on this
//! worker and audited, in one statement (`sql/worker/claim.sql`). Actions with a
//! `concurrency` limit are claimed apart, under their action's row lock — after the others
//! have started, so their look costs those no round trip.

use attune_core::domain::RunnerType;
pub use attune_core::handoff::Claimed;
use sqlx::{Connection as _, PgConnection};

use crate::registry::Registration;

/// Claims up to `free` executions of `runtimes` for `worker` of actions without a
/// concurrency limit (one statement, which also records `execution.started`). Those of
/// limited actions are claimed apart ([`claim_limited`]), after these have started.
pub async fn claim(
    conn: &mut PgConnection,
    worker: &Registration,
    runtimes: &[RunnerType],
    free: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_file_as!(
        Claimed,
        "../../sql/worker/claim.sql",
        worker.id,
        runtimes as &[RunnerType],
        free as i64,
        &worker.name,
        None::<i64>,
    )
    .fetch_all(conn)
    .await
}

/// Claims executions of actions with a `concurrency` limit: each such action's row is
/// locked while its running executions are counted and the free ones claimed, so the
/// limit holds across every worker.
pub async fn claim_limited(
    conn: &mut PgConnection,
    worker: &Registration,
    runtimes: &[RunnerType],
    mut free: usize,
) -> Result<Vec<Claimed>, sqlx::Error> {
    // Most rounds find no limited action with work: one look outside a transaction first
    // (its row locks, if it takes any, end with the statement), so that common case costs
    // one round trip instead of BEGIN, the look and COMMIT.
    let any = sqlx::query_file_scalar!("../../sql/worker/limited_lock.sql", runtimes as &[RunnerType])
        .fetch_all(&mut *conn)
        .await?;
    if any.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = conn.begin().await?;
    let locked = sqlx::query_file_scalar!("../../sql/worker/limited_lock.sql", runtimes as &[RunnerType])
        .fetch_all(&mut *tx)
        .await?;
    // Counted only now that the rows are locked, in a statement (and so a snapshot) of its
    // own: it sees every claim of the worker that held a lock before this one.
    let limited = sqlx::query_file!("../../sql/worker/limited_free.sql", &locked).fetch_all(&mut *tx).await?;
    let mut claimed = Vec::new();
    for action in limited {
        let take = (action.free.max(0) as usize).min(free);
        if take == 0 {
            continue;
        }
        let rows = sqlx::query_file_as!(
            Claimed,
            "../../sql/worker/claim.sql",
            worker.id,
            runtimes as &[RunnerType],
            take as i64,
            &worker.name,
            Some(action.id),
        )
        .fetch_all(&mut *tx)
        .await?;
        free -= rows.len();
        claimed.extend(rows);
    }
    tx.commit().await?;
    Ok(claimed)
}
