//! The claim: up to the free slots' worth of scheduled executions, marked `running` on this
//! worker and audited, in one statement (`sql/worker/claim.sql`). Actions with a
//! `concurrency` limit are claimed apart, under their action's row lock — after the others
//! have started, so their look costs those no round trip.

use attune_core::domain::RunnerType;
use serde_json::Value;
use sqlx::{Connection as _, PgConnection};

use crate::registry::Registration;

/// A claimed execution with what running it needs (one row of `sql/worker/claim.sql`).
#[derive(Debug)]
pub struct Claimed {
    pub id: i64,
    pub tenant_id: i64,
    pub action_ref: String,
    pub runner_type: RunnerType,
    /// Non-secret parameters (secret ones masked).
    pub parameters: Value,
    /// The secret parameters, sealed.
    pub secret_params: Option<Vec<u8>>,
    pub attempt: i32,
    pub timeout_seconds: Option<i32>,
    pub entry_point: Option<String>,
    pub command: Option<String>,
    pub code: Option<String>,
    /// Names of the action's secret parameters.
    pub secret_names: Vec<String>,
    /// The datastore keys the action declares as secrets.
    pub secrets: Vec<String>,
    pub pack_path: Option<String>,
    pub network: bool,
    /// The action's `http` block (runner `http`).
    pub http: Option<Value>,
    /// The action's `container` block (runner `container`).
    pub container: Option<Value>,
    pub pack_ref: Option<String>,
    pub pack_version: Option<String>,
}

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
