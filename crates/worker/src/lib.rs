//! Attune worker: claims scheduled executions and runs them.
//!
//! # Layout
//! - [`registry`]: the worker's row in `attune.worker` and its heartbeat.
//! - [`claim`]: the claim loops — one statement (`UPDATE … FOR UPDATE SKIP LOCKED …
//!   RETURNING`) takes up to the free slots' worth of executions. Two lanes: child-process
//!   runners (`worker.concurrency` slots) and in-process builtins (their own larger budget).
//! - [`runners`]: how an action runs: `builtin` (in-process core actions), and child
//!   processes for `shell` and `python` with the action protocol (JSON on stdin, bounded
//!   output capture, timeouts, process groups).
//! - [`complete`]: results are written in batches, one statement per batch.
//!
//! Shutdown stops claiming first, lets running executions finish, flushes their results,
//! then marks the worker stopped.

pub mod claim;
pub mod complete;
pub mod output;
pub mod registry;
pub mod runners;

use attune_core::{Context, Shutdown};

/// Runner types this worker runs.
pub const RUNTIMES: &[&str] = &["builtin", "shell", "python"];
/// Runner types that start a child process: at most `worker.concurrency` at once.
pub const PROCESS_RUNTIMES: &[&str] = &["shell", "python"];
/// In-process actions (`builtin`) use no process and next to no CPU, so they get a
/// budget of their own: a worker full of long shell actions still runs `core.noop` at
/// once, and a burst of no-ops is claimed hundreds at a time, not one slot at a time.
pub const IN_PROCESS_SLOTS: usize = 256;

/// Runs the worker: one registration, two claim loops (child processes and in-process
/// actions), one completer.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    claim::Worker::start(ctx, shutdown).await?.run().await
}
