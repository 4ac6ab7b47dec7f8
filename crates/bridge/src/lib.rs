//! Attune bridge: publishes the change log to RabbitMQ and turns inbound messages into
//! events (docs/streaming.md, "RabbitMQ bridge"). Off unless `ATTUNE_AMQP_URL` is set.
//!
//! # Layout
//! - [`outbound`]: the change log → topic exchange `attune.events`, batch by batch with
//!   publisher confirms; the cursor is stored only once a batch is confirmed.
//! - [`leader`]: one active publisher across processes (a session-level advisory lock on a
//!   connection of its own, which also carries the cursor's reads and writes).
//! - [`inbound`]: the queue `attune.inbound` → events, acked after commit; messages that
//!   can never become events go to `attune.inbound.dlq` with the reason.
//! - [`amqp`]: named connections, capped exponential backoff, URLs safe to log.
//!
//! [`run`] runs both halves (inbound unless `ATTUNE_AMQP_INBOUND=false`). On shutdown the
//! publisher finishes its batch in flight (confirms, cursor) and the consumer settles the
//! message in hand; then each closes its channel and connection.

pub mod amqp;
pub mod inbound;
pub mod leader;
pub mod outbound;

use attune_core::service::{announce_drain, stopping_others};
use attune_core::{Context, Shutdown};

/// The AMQP client, for consumers of the bridge written in Rust (and the tests).
pub use lapin;

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let Some(url) = ctx.config.bridge.amqp_url.clone() else {
        tracing::info!("bridge: off (ATTUNE_AMQP_URL is not set); idle");
        shutdown.cancelled().await;
        tracing::info!("bridge draining: nothing in hand");
        tracing::info!("bridge stopped");
        return Ok(());
    };
    // A part that fails stops the other, so the process sees the failure.
    let stop = shutdown.child_token();
    let outbound = stopping_others(outbound::run(ctx.clone(), url.clone(), stop.clone()), &stop);
    let inbound = async {
        if ctx.config.bridge.amqp_inbound {
            stopping_others(inbound::run(ctx.clone(), url.clone(), stop.clone()), &stop).await
        } else {
            Ok(())
        }
    };
    let drain = announce_drain(
        &shutdown,
        &stop,
        "bridge draining: confirming the batch in flight, settling the inbound message in hand",
    );
    let (outbound, inbound, ()) = tokio::join!(outbound, inbound, drain);
    tracing::info!("bridge stopped");
    outbound.and(inbound)
}
