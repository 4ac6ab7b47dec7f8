//! Attune worker: claims scheduled executions and runs them.
//!
//! # Layout
//! - [`worker`]: the worker's life — registration, heartbeat, the completer, the cancel
//!   watcher and the two lanes, then drain and deregistration on shutdown; and, when its
//!   liveness session fails, stopping its actions and ending.
//! - [`lane`]: the claim loop of one lane: claims up to its free slots' worth of
//!   executions, runs each on its own task and hands the outcome to the completer. Two
//!   lanes: child-process runners (`worker.concurrency` slots) and in-process runners
//!   ([`IN_PROCESS_SLOTS`]); the runner types of each come from
//!   [`RunnerType`](attune_core::domain::RunnerType).
//! - [`claim`]: the claim itself — one statement (`sql/worker/claim.sql`:
//!   `UPDATE … FOR UPDATE SKIP LOCKED … RETURNING`), plus the claim of actions with a
//!   `concurrency` limit under their action's row lock.
//! - [`prepare`]: a claimed row becomes a [`runners::Job`]: secret parameters unsealed,
//!   declared datastore secrets decrypted, the execution token issued, the cancel switch
//!   registered.
//! - [`cancel_watch`]: stops the executions running here that someone asked to cancel.
//! - [`runners`]: how an action runs: `builtin` (in-process core actions), `http` (one
//!   HTTP call made in-process, [`runners::http`]), `container` (a container per attempt
//!   through the Docker Engine API, [`runners::container`]), and child
//!   processes for `shell`, `python` and `node` with the action protocol (the JSON
//!   document complete on stdin before the action starts, bounded output capture
//!   ([`output`]), timeouts), each in a PID namespace that dies with the worker
//!   (`attune_core::child`).
//! - [`envs`]: the packs' runtime environments (a python virtualenv per `requirements.txt`,
//!   a `node_modules` per `package.json`), built once per pack version, sandboxed, under a
//!   file lock, and renamed into place when complete.
//! - [`masking`]: the job's secret values masked out of its output as it is read, before
//!   anything of it is kept.
//! - [`attempts`]: the pid of each started attempt, recorded in batches (the claim writes
//!   the attempt's row).
//! - [`complete`]: results are written in batches, one statement per batch
//!   (`sql/worker/complete.sql`).
//! - [`registry`]: the worker's incarnation (a new `attune.worker` row at every start), its
//!   liveness session (an advisory lock held on a connection of its own, which the
//!   reaper checks) and its heartbeat.
//!
//! Shutdown stops claiming first, lets running executions finish, flushes their results,
//! then marks the worker stopped.

pub mod attempts;
pub mod cancel_watch;
pub mod claim;
pub mod complete;
pub mod envs;
pub mod lane;
pub mod masking;
pub mod output;
pub mod prepare;
pub mod registry;
pub mod runners;
pub mod worker;

use attune_core::{Context, Shutdown};

/// In-process actions (`builtin`, `http`) use no process and next to no CPU, so they get a
/// budget of their own: a worker full of long shell actions still runs `core.noop` at
/// once, and a burst of no-ops is claimed hundreds at a time, not one slot at a time.
pub const IN_PROCESS_SLOTS: usize = 256;

/// Runs the worker: one registration, two claim loops (child processes and in-process
/// actions), one completer.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    worker::Worker::start(ctx, shutdown).await?.run().await
}
