//! Attune notifier: tails `change_log` and fans changes out to WebSocket subscribers of
//! the right tenant.
//!
//! Not built yet: [`run`] only waits for shutdown, so `attune up` can already run it. It
//! holds no work, so its drain is immediate.

use attune_core::{Context, Shutdown};

pub async fn run(_ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    tracing::info!("notifier: no WebSocket fan-out yet; idle");
    shutdown.cancelled().await;
    tracing::info!("notifier draining: nothing in hand");
    tracing::info!("notifier stopped");
    Ok(())
}
