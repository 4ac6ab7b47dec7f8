//! Attune bridge: publishes `change_log` to RabbitMQ and turns inbound messages into
//! events. Off unless `ATTUNE_AMQP_URL` is set.
//!
//! Not built yet: [`run`] only waits for shutdown, so `attune up` can already run it. It
//! holds no work, so its drain is immediate.

use attune_core::{Context, Shutdown};

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    if ctx.config.bridge.amqp_url.is_some() {
        tracing::warn!("bridge: ATTUNE_AMQP_URL is set, but the bridge is not built yet; idle");
    }
    shutdown.cancelled().await;
    tracing::info!("bridge draining: nothing in hand");
    tracing::info!("bridge stopped");
    Ok(())
}
