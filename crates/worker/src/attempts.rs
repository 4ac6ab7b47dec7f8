//! Records the pid of each attempt's process once it started, in batches: the attempt's
//! row itself is written by the claim (`running`, this worker, its start), so a worker that
//! dies leaves it for the reaper to close as `lost`; the pid tells an operator which
//! process that was.
//!
//! A pid is a label, written within [`GATHER`] of the start: the recorder gathers the
//! reports of that long before it writes them, and only attempts still running get theirs.
//! Most attempts of quick actions have ended by then, so they cost no write of their own —
//! one statement a moment, not one per execution — and their completion does not wait for
//! the lock of a pid being written to the same row.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;

/// Most pids written by one statement.
const MAX_BATCH: usize = 512;

/// How long the recorder gathers reports before it writes them.
pub const GATHER: Duration = Duration::from_millis(250);

struct Started {
    execution_id: i64,
    attempt: i32,
    pid: i32,
}

/// Where runners report the processes they start.
#[derive(Clone, Debug)]
pub struct StartedTx(mpsc::UnboundedSender<Started>);

impl StartedTx {
    pub fn report(&self, execution_id: i64, attempt: i32, pid: u32) {
        // The recorder lives until every sender is gone.
        let _ = self.0.send(Started { execution_id, attempt, pid: pid as i32 });
    }
}

/// The reporting side and the recorder task (ends when every sender is dropped).
pub fn recorder(pool: PgPool) -> (StartedTx, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Started>();
    let task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // A full batch (a backlog) is written at once: the recorder never falls behind.
            if batch.len() < MAX_BATCH {
                tokio::time::sleep(GATHER).await;
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(started) => batch.push(started),
                        Err(_) => break,
                    }
                }
            }
            let ids: Vec<i64> = batch.iter().map(|s| s.execution_id).collect();
            let attempts: Vec<i32> = batch.iter().map(|s| s.attempt).collect();
            let pids: Vec<i32> = batch.iter().map(|s| s.pid).collect();
            let written =
                sqlx::query_file!("../../sql/worker/attempt_pids.sql", &ids, &attempts, &pids).execute(&pool).await;
            if let Err(e) = written {
                // Only a label for operators: not worth holding results for.
                tracing::warn!(error = %e, rows = batch.len(), "attempt pids not recorded");
            }
            batch.clear();
        }
    });
    (StartedTx(tx), task)
}
