//! Writes finished attempts in batches: one statement records the status and result of
//! every execution in the batch, its attempt row and its captured output, and one more
//! appends the audit entries. Under load this turns thousands of completions a second
//! into a few dozen transactions.

use std::time::Duration;

use attune_core::audit::{self, Actor, Entry};
use serde_json::json;
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
        let mut delay = Duration::from_millis(100);
        // A failed write is retried: the results are only in memory.
        while let Err(e) = write(&pool, &worker_name, &batch).await {
            tracing::error!(error = %e, executions = batch.len(), "cannot record results; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        batch.clear();
    }
}

async fn write(pool: &PgPool, worker_name: &str, batch: &[Finished]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(include_str!("../../../sql/worker/complete.sql"))
        .bind(batch.iter().map(|f| f.execution_id).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.status()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.result_json()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.execution_id).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.stdout.clone()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.stderr.clone()).collect::<Vec<_>>())
        .bind(batch.iter().map(|f| f.outcome.truncated).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    let entries: Vec<Entry> = batch
        .iter()
        .map(|f| Entry {
            tenant_id: Some(f.tenant_id),
            actor: Actor::worker(worker_name),
            action: format!("execution.{}", f.outcome.status()),
            entity_type: "execution".into(),
            entity_id: f.execution_id.to_string(),
            data: json!({"action": f.action_ref, "exit_code": f.outcome.exit_code, "error": f.outcome.error}),
        })
        .collect();
    audit::record(&mut tx, &entries).await?;
    tx.commit().await
}
