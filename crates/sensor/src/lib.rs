//! Attune sensor service: timers (interval, cron, date) and custom sensor processes.
//!
//! Planned layout (the sensors-and-timers issue builds it): `timers.rs` (claims
//! `timer_state` rows with SKIP LOCKED so a tick fires once across replicas) and
//! `custom.rs` (supervises pack sensor processes).
//!
//! Not built yet: [`run`] only waits for shutdown, so `attune up` can already run it.

use attune_core::{Context, Shutdown};

pub async fn run(_ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!("sensor: no timers yet (arrive with the sensors-and-timers issue); idle");
    shutdown.cancelled().await;
    Ok(())
}
