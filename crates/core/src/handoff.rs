//! Hand-off within a process: a manual run (or a workflow task due now) given to a free
//! slot of a worker lane of the process that creates it, in the transaction that creates it
//! (`attune up` runs every service in one process), instead of being created `scheduled`
//! for a claim. The API's run statement (`sql/execution/run.sql`) and the workflow engine's
//! (`sql/workflow/insert_children.sql`) do it.
//!
//! A claim costs a worker a round trip and a commit of its own after the run's commit, and
//! the wake-up in between: about a third of a warm action's overhead (docs/benchmarks.md).
//! Handed, the run is created `running` on that worker, with the claim's trail (change-log
//! row, audit entry, the attempt's row) in the creating statement; after the commit the
//! lane gets the row over a channel and starts it as one it claimed.
//! The database stays the truth: committed `running` on a worker is what a claim commits,
//! so a process that dies after the commit leaves what a dead worker's claim leaves, and
//! the reaper moves it on (`sql/workers/reap_lost.sql`); a transaction that fails gives the
//! slot back (the [`Reservation`] is dropped) and leaves nothing.
//!
//! A lane offers its slots only while it is idle — its last claim round found fewer
//! executions than it had slots, and no hint has woken it since — so a hand-off never
//! overtakes work already waiting for it (at most one round's worth, when a hint arrives
//! as a slot is kept). A lane that stops claiming leaves the register first, then still
//! starts what was handed to it before — unless its worker was lost: the reaper moves such
//! runs on. The commit and the hand-over go together ([`commit_and_hand`]).
//!
//! Each [`Context`](crate::Context) has its own register: a context made for another
//! process (`Context::with_pool`) sees none of this one's lanes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::domain::RunnerType;

/// An execution claimed (or handed) to a worker, with what running it needs: a row of
/// `sql/worker/claim.sql`, or of `sql/execution/run.sql` when handed.
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

/// A [`Claimed`] from a row of a statement that returns what running an execution needs
/// under the claim's column names (`sql/worker/claim.sql`, `sql/execution/run.sql`,
/// `sql/workflow/insert_children.sql`): the rows of the checked query macros are types of
/// their own, one per statement.
#[macro_export]
macro_rules! claimed_from_row {
    ($row:expr) => {{
        let row = $row;
        $crate::handoff::Claimed {
            id: row.id,
            tenant_id: row.tenant_id,
            action_ref: row.action_ref,
            runner_type: row.runner_type,
            parameters: row.parameters,
            secret_params: row.secret_params,
            attempt: row.attempt,
            timeout_seconds: row.timeout_seconds,
            entry_point: row.entry_point,
            command: row.command,
            code: row.code,
            secret_names: row.secret_names,
            secrets: row.secrets,
            pack_path: row.pack_path,
            network: row.network,
            http: row.http,
            container: row.container,
            pack_ref: row.pack_ref,
            pack_version: row.pack_version,
        }
    }};
}

/// A committed execution handed to a lane, with the slot kept for it.
#[derive(Debug)]
pub struct Handed {
    pub claimed: Claimed,
    pub slot: OwnedSemaphorePermit,
}

/// The lanes of this process that take hand-offs.
#[derive(Clone, Default)]
pub struct Lanes {
    listed: Arc<Mutex<Vec<Listed>>>,
    next: Arc<AtomicU64>,
}

struct Listed {
    id: u64,
    worker_id: i64,
    worker_name: Arc<str>,
    runtimes: Vec<RunnerType>,
    slots: Arc<Semaphore>,
    idle: Arc<AtomicBool>,
    handed: mpsc::UnboundedSender<Handed>,
}

/// A lane's place in the register; leaves it when closed or dropped.
pub struct Door {
    lanes: Lanes,
    id: u64,
    idle: Arc<AtomicBool>,
    /// What was handed to the lane.
    pub handed: mpsc::UnboundedReceiver<Handed>,
}

/// A free slot of a lane, kept for one run while its transaction is open.
#[derive(Debug)]
pub struct Reservation {
    pub worker_id: i64,
    pub worker_name: Arc<str>,
    slot: OwnedSemaphorePermit,
    handed: mpsc::UnboundedSender<Handed>,
}

impl Lanes {
    fn listed(&self) -> std::sync::MutexGuard<'_, Vec<Listed>> {
        self.listed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters a lane of worker `worker_id` (`worker_name`) that runs `runtimes` in `slots`.
    /// It takes no hand-off until it says it is idle.
    pub fn enter(&self, worker_id: i64, worker_name: &str, runtimes: &[RunnerType], slots: Arc<Semaphore>) -> Door {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let idle = Arc::new(AtomicBool::new(false));
        self.listed().push(Listed {
            id,
            worker_id,
            worker_name: worker_name.into(),
            runtimes: runtimes.to_vec(),
            slots,
            idle: idle.clone(),
            handed: tx,
        });
        Door { lanes: self.clone(), id, idle, handed: rx }
    }

    /// A free slot of an idle lane that runs `runner`, kept until the reservation is handed
    /// on or dropped.
    pub fn reserve(&self, runner: RunnerType) -> Option<Reservation> {
        let listed = self.listed();
        listed.iter().filter(|d| d.idle.load(Ordering::Acquire) && d.runtimes.contains(&runner)).find_map(|d| {
            let slot = d.slots.clone().try_acquire_owned().ok()?;
            Some(Reservation {
                worker_id: d.worker_id,
                worker_name: d.worker_name.clone(),
                slot,
                handed: d.handed.clone(),
            })
        })
    }
}

impl Door {
    /// Whether the lane offers its free slots: only while no work may be waiting for it.
    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Release);
    }

    /// Leaves the register: no more reservations. What was handed before is still received.
    pub fn close(&self) {
        self.set_idle(false);
        self.lanes.listed().retain(|d| d.id != self.id);
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        self.close();
    }
}

/// Commits `tx`, which created `handed` `running` on their reservations' workers, then hands
/// each to its lane. Both happen on a task of their own, so they finish even when the
/// caller's future is dropped meanwhile (a client that hung up, a request's timeout): a run
/// committed `running` on a live worker and never handed would stay so until that worker
/// restarts. A commit that answers an error may still have committed (the connection went
/// down with the answer): the runs found committed on their worker are handed all the same.
pub async fn commit_and_hand(
    pool: &PgPool,
    tx: Transaction<'static, Postgres>,
    handed: Vec<(Reservation, Claimed)>,
) -> Result<(), sqlx::Error> {
    if handed.is_empty() {
        return tx.commit().await;
    }
    let pool = pool.clone();
    let task = tokio::spawn(async move {
        let committed = tx.commit().await;
        let handed = match &committed {
            Ok(()) => handed,
            Err(_) => {
                let ids: Vec<i64> = handed.iter().map(|(_, c)| c.id).collect();
                let there = sqlx::query!("SELECT id, worker_id FROM attune.execution WHERE id = ANY($1)", &ids)
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(executions = ?ids, error = %e,
                            "a commit answered an error and its runs cannot be looked up: those committed stay running until their worker restarts");
                        Vec::new()
                    });
                handed
                    .into_iter()
                    .filter(|(r, c)| there.iter().any(|t| t.id == c.id && t.worker_id == Some(r.worker_id)))
                    .collect()
            }
        };
        for (here, claimed) in handed {
            here.hand(claimed);
        }
        committed
    });
    task.await.unwrap_or_else(|e| Err(sqlx::Error::Protocol(format!("the commit's task failed: {e}"))))
}

impl Reservation {
    /// Hands `claimed` (committed `running` on this reservation's worker) to the lane. The
    /// lane holds its receiver until every slot is back, this one included, so it is there.
    pub fn hand(self, claimed: Claimed) {
        let id = claimed.id;
        if self.handed.send(Handed { claimed, slot: self.slot }).is_err() {
            tracing::error!(execution = id, worker = self.worker_id, "the lane this run was handed to is gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(id: i64) -> Claimed {
        Claimed {
            id,
            tenant_id: 1,
            action_ref: "core.noop".into(),
            runner_type: RunnerType::Builtin,
            parameters: Value::Null,
            secret_params: None,
            attempt: 1,
            timeout_seconds: None,
            entry_point: None,
            command: None,
            code: None,
            secret_names: vec![],
            secrets: vec![],
            pack_path: None,
            network: true,
            http: None,
            container: None,
            pack_ref: None,
            pack_version: None,
        }
    }

    #[tokio::test]
    async fn only_an_idle_lane_of_the_runner_with_a_free_slot_takes_a_run() {
        let lanes = Lanes::default();
        let slots = Arc::new(Semaphore::new(1));
        let mut lane = lanes.enter(7, "w", &[RunnerType::Builtin], slots.clone());
        assert!(lanes.reserve(RunnerType::Builtin).is_none(), "not idle yet");
        lane.set_idle(true);
        assert!(lanes.reserve(RunnerType::Python).is_none(), "another runner type");
        let kept = lanes.reserve(RunnerType::Builtin).expect("an idle lane with a free slot");
        assert_eq!((kept.worker_id, &*kept.worker_name), (7, "w"));
        assert!(lanes.reserve(RunnerType::Builtin).is_none(), "its one slot is kept");
        drop(kept);
        assert_eq!(slots.available_permits(), 1, "a dropped reservation gives its slot back");

        lanes.reserve(RunnerType::Builtin).expect("free again").hand(claimed(42));
        let handed = lane.handed.recv().await.expect("handed");
        assert_eq!(handed.claimed.id, 42);
        assert_eq!(slots.available_permits(), 0, "the slot goes with the run");
        drop(handed);

        lane.close();
        assert!(lanes.reserve(RunnerType::Builtin).is_none(), "a closed lane takes nothing");
    }
}
