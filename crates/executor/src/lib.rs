//! Attune executor: turns events into executions and keeps executions moving.
//!
//! Planned layout (the event-pipeline, workflow and inquiry issues build it):
//! `rule_engine.rs` (claims events, matches rules, writes enforcements and executions in
//! one transaction), `scheduler.rs` (parameter validation and policies), `workflow/`,
//! `inquiry_expiry.rs` and `reaper.rs` (work held by workers that stopped heart-beating).
//!
//! Not built yet: [`run`] only waits for shutdown, so `attune up` can already run it.

use attune_core::{Context, Shutdown};

pub async fn run(_ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!("executor: no stages yet (rule engine and scheduler arrive with the event pipeline); idle");
    shutdown.cancelled().await;
    Ok(())
}
