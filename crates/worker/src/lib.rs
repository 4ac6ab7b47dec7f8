//! Attune worker: claims scheduled executions and runs them.
//!
//! # Layout
//! - [`registry`]: the worker's row in `attune.worker` and its heartbeat.
//! - [`claim`]: the claim loop — one `UPDATE … FOR UPDATE SKIP LOCKED … RETURNING` takes
//!   up to the free slots' worth of executions of the runner types this worker runs.
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

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    claim::Worker::start(ctx, shutdown).await?.run().await
}
