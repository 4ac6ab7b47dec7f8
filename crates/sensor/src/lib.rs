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
//! inserting events, for the rule engine. On shutdown [`run`] waits for both to drain.

pub mod custom;
pub mod schedule;
pub mod timers;

use attune_core::service::{announce_drain, stopping_others};
use attune_core::{Context, Shutdown};

/// Runs the timers and the custom sensors until `shutdown`, then drains: the timers let
/// the round in hand commit (its ticks fire once, or stay due) and the custom sensors stop
/// their processes and give their leases back. Returns when both have; one failing stops
/// the other, and its error is returned.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let stop = shutdown.child_token();
    // First, so the drain is announced before the parts log their own ends.
    let ((), a, b) = tokio::join!(
        announce_drain(
            &shutdown,
            &stop,
            "sensor draining: the timers commit the round in hand, custom sensors are stopped"
        ),
        stopping_others(timers::run(ctx.clone(), stop.clone()), &stop),
        stopping_others(custom::run(ctx, stop.clone()), &stop),
    );
    let result = a.and(b);
    if result.is_ok() {
        tracing::info!("sensor stopped");
    }
    result
}
