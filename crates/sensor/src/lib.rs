//! Attune sensor service: turns time and custom sensor processes into events.
//!
//! # Layout
//! - [`schedule`]: when interval, cron and date timers tick, and the missed-tick policy.
//! - [`timers`]: the service loop — reconcile `timer_state` with triggers and rules, claim
//!   due ticks with `FOR UPDATE SKIP LOCKED`, insert their events, sleep until the next.
//! - [`custom`]: pack sensors — one supervised process per sensor across all services
//!   (leases), restarted with backoff; each JSON line it writes becomes an event.
//!
//! Both take the [`Context`]: they wake early through its notifier (`ctx.notifier`, on the
//! `Timer` and `Rule` channels) when triggers or rules change, and hint `Event` after
//! inserting events, for the rule engine.

pub mod custom;
pub mod schedule;
pub mod timers;

use attune_core::{Context, Shutdown};

/// Runs the timers and the custom sensors until `shutdown`.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let (a, b) = tokio::join!(timers::run(ctx.clone(), shutdown.clone()), custom::run(ctx, shutdown));
    a.and(b)
}
