//! Attune sensor service: turns time (and, later, custom sensor processes) into events.
//!
//! # Layout
//! - [`schedule`]: when interval, cron and date timers tick, and the missed-tick policy.
//! - [`timers`]: the service loop — reconcile `timer_state` with triggers and rules, claim
//!   due ticks with `FOR UPDATE SKIP LOCKED`, insert their events, sleep until the next.
//!
//! Custom sensors from packs (`sensors/NAME.yaml`) are loaded and stored, but not run yet.

pub mod schedule;
pub mod timers;

use attune_core::{Context, Shutdown};

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    timers::run(ctx, shutdown).await
}
