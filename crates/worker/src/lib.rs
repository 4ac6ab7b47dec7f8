//! Attune worker: claims scheduled executions and runs them.
//!
//! Planned layout (the event-pipeline issue builds it): `claim.rs` (the batch claim loop),
//! `runners/` (builtin, shell, python, node, http, container), `output.rs` (bounded
//! capture), `heartbeat.rs`.
//!
//! Not built yet: [`run`] only waits for shutdown, so `attune up` can already run it.

use attune_core::{Context, Shutdown};

pub async fn run(_ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!("worker: no claim loop yet (arrives with the event pipeline); idle");
    shutdown.cancelled().await;
    Ok(())
}
