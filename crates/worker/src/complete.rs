//! Writes finished attempts in batches: one statement records the status and result of
//! every execution in the batch, its attempt row, its captured output and its audit entry.
//! Under load this turns thousands of completions a second into a few dozen statements.
//!
//! Results are only in memory until written, so a failed write is retried — except one
//! the database refuses for its content (SQLSTATE class 22), which is split up so a single
//! bad result can never block the others: that execution is recorded as failed instead.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::runners::Outcome;

/// Most completions written by one statement.
const MAX_BATCH: usize = 512;

pub struct Finished {
    pub execution_id: i64,
    pub tenant_id: i64,
    pub action_ref: String,
    pub outcome: Outcome,
}

/// Drains `rx` until it closes (every sender dropped), writing batches as they come.
pub async fn run(pool: PgPool, worker_name: String, mut rx: mpsc::Receiver<Finished>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_resilient(&pool, &worker_name, &mut batch).await;
        batch.clear();
    }
}

fn refused_for_content(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("22")))
}

async fn write_resilient(pool: &PgPool, worker_name: &str, batch: &mut [Finished]) {
    let mut delay = Duration::from_millis(100);
    loop {
        match write(pool, worker_name, batch).await {
            Ok(()) => return,
            Err(e) if refused_for_content(&e) && batch.len() > 1 => {
                // Find the bad one(s): write each alone.
                for one in batch.iter_mut() {
                    Box::pin(write_resilient(pool, worker_name, std::slice::from_mut(one))).await;
                }
                return;
            }
            Err(e) if refused_for_content(&e) => {
                let one = &mut batch[0];
                tracing::error!(execution = one.execution_id, error = %e, "a result was refused by the database; recording a failure");
                one.outcome = Outcome::failed(format!("the action's result could not be stored: {e}"));
            }
            Err(e) => {
                tracing::error!(error = %e, executions = batch.len(), "cannot record results; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn write(pool: &PgPool, worker_name: &str, batch: &[Finished]) -> Result<(), sqlx::Error> {
    sqlx::query(include_str!("../../../sql/worker/complete.sql"))
        .bind(batch.iter().map(|f| f.execution_id).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.status()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.result_json()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.execution_id).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.stdout.clone()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.stderr.clone()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.truncated).collect::<Vec<_>>())
        .bind(worker_name)
        .execute(pool)
        .await?;
    Ok(())
}
