//! Writes finished attempts in batches: one statement records the status and result of
//! every execution in the batch, its attempt row, its captured output and its audit entry.
//! Under load this turns thousands of completions a second into a few dozen statements.
//!
//! Results are only in memory until written, so a failed write is retried — except one
//! the database refuses for its content (SQLSTATE class 22), which is split up so a single
//! bad result can never block the others: that execution is recorded as failed instead.

use std::time::{Duration, Instant};

use attune_core::db::is_data_exception;
use attune_core::domain::{ExecutionStatus, RunnerType};
use attune_core::held::Held;
use attune_core::wakeup::{Hint, Tags};
use attune_core::Shutdown;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::registry::Registration;
use crate::runners::Outcome;

/// Most completions written by one statement.
const MAX_BATCH: usize = 512;

pub struct Finished {
    pub execution_id: i64,
    /// The attempt that finished: a late result never counts for a later attempt.
    pub attempt: i32,
    pub tenant_id: i64,
    pub action_ref: String,
    /// For `attune_executions_finished_total`.
    pub runner_type: attune_core::domain::RunnerType,
    pub outcome: Outcome,
}

/// Drains `rx` until it closes (every sender dropped), writing batches as they come. Once
/// the worker is `lost` (its liveness session failed, so the reaper hands its executions to
/// others), results are dropped: they belong to attempts that no longer count.
/// `changes` is poked after each batch is committed: the change-log readers, and the
/// workflow engine when one of the executions is a workflow's task.
pub async fn run(pool: PgPool, me: Registration, mut rx: mpsc::Receiver<Finished>, lost: Shutdown, changes: Hint) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // One connection for the batches, kept from one to the next (see `Held`).
    let mut conn = Held::new(pool);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = Instant::now();
        if lost.is_cancelled() {
            tracing::warn!(rows = batch.len(), "results dropped: this worker lost its liveness session");
        } else {
            let in_workflow = write_resilient(&mut conn, &me, &mut batch, &lost).await;
            let workflow = if in_workflow { Tags::runners([RunnerType::Workflow]) } else { Tags::NONE };
            changes.poke_tagged(Tags::CHANGES.with(workflow));
        }
        tracing::debug!(rows = batch.len(), ms = started.elapsed().as_millis() as u64, "completer batch");
        batch.clear();
    }
}

/// Writes `batch` (retrying until written or lost); true when one of the executions is a
/// workflow's task (false once lost: nothing was written).
async fn write_resilient(conn: &mut Held, me: &Registration, batch: &mut [Finished], lost: &Shutdown) -> bool {
    let mut delay = Duration::from_millis(100);
    while !lost.is_cancelled() {
        let written = match conn.get().await {
            Ok(c) => write(c, me, batch).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(in_workflow) => return in_workflow,
            Err(e) if is_data_exception(&e) && batch.len() > 1 => {
                // Find the bad one(s): write each alone.
                let mut in_workflow = false;
                for one in batch.iter_mut() {
                    in_workflow |= Box::pin(write_resilient(conn, me, std::slice::from_mut(one), lost)).await;
                }
                return in_workflow;
            }
            Err(e) if is_data_exception(&e) => {
                let one = &mut batch[0];
                tracing::error!(execution = one.execution_id, error = %e, "a result was refused by the database; recording a failure");
                one.outcome = Outcome::failed(format!("the action's result could not be stored: {e}"));
            }
            Err(e) => {
                conn.reset();
                tracing::error!(error = %e, executions = batch.len(), "cannot record results; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    false
}

/// The batch as the columns of `sql/worker/complete.sql`, element i of each for the
/// i-th finished attempt.
#[derive(Default)]
struct Columns<'a> {
    ids: Vec<i64>,
    attempts: Vec<i32>,
    statuses: Vec<ExecutionStatus>,
    results: Vec<Value>,
    stdouts: Vec<&'a str>,
    stderrs: Vec<&'a str>,
    truncated: Vec<bool>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a [Finished]) -> Columns<'a> {
        let mut c = Columns::default();
        for f in batch {
            c.ids.push(f.execution_id);
            c.attempts.push(f.attempt);
            c.statuses.push(f.outcome.status());
            c.results.push(f.outcome.result_json());
            c.stdouts.push(&f.outcome.stdout);
            c.stderrs.push(&f.outcome.stderr);
            c.truncated.push(f.outcome.truncated);
        }
        c
    }
}

async fn write(conn: &mut PgConnection, me: &Registration, batch: &[Finished]) -> Result<bool, sqlx::Error> {
    let c = Columns::of(batch);
    let in_workflow = sqlx::query_file_scalar!(
        "../../sql/worker/complete.sql",
        &c.ids,
        &c.statuses as &[ExecutionStatus],
        &c.results,
        &c.stdouts as &[&str],
        &c.stderrs as &[&str],
        &c.truncated,
        me.name,
        me.id,
        &c.attempts,
    )
    .fetch_one(conn)
    .await?;
    for f in batch {
        attune_core::metrics::execution_finished(f.outcome.status().as_str(), f.runner_type.as_str());
    }
    Ok(in_workflow)
}
