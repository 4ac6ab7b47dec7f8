//! Attune executor: turns events into executions and keeps executions moving.
//!
//! # Layout
//! - [`rule_engine`]: claims unprocessed events, matches rules (criteria), renders action
//!   parameters, admits the executions ([`attune_core::admission`]) and writes the
//!   enforcements and `scheduled` (or `failed`) executions — one transaction a batch.
//! - [`scheduler`]: validates requested executions against their action's schema and
//!   schedules them for the workers (or fails them at once, naming the bad parameter).
//! - [`maintenance`]: housekeeping under a leader lock (purging expired datastore items,
//!   trimming the change log to its retention).
//! - [`reaper`]: finds workers whose liveness session ended (or whose heartbeat went stale)
//!   twice a second, one executor at a time (leader lock), and retries or fails their
//!   running executions (ending the ones they were canceling `canceled`).
//!
//! The rule engine (woken on `Event` and `Rule`) and the scheduler (on `Requested`)
//! subscribe through the process's notifier (`ctx.notifier`) and poll every second as a
//! fallback; both hint `Scheduled` for the workers.
//! Several executors may run against one database: every claim is `FOR UPDATE SKIP LOCKED`.
//!
//! On shutdown ([`run`]) each part stops claiming, lets the round in progress commit (only
//! the wait between rounds is interrupted) and returns; `run` returns when all three have.
//! - [`workflow`]: the workflow engine: starts workflow executions and advances each under
//!   its row's lock as its children end (woken on `Scheduled`, `Change` and `Cancel`).
//! - [`inquiries`]: runs `inquiry` executions: opens their inquiries (the execution waits
//!   `paused`), expires them at their TTL (the row is the timer), ends canceled ones.

pub mod inquiries;
pub mod maintenance;
pub mod reaper;
pub mod rule_engine;
pub mod scheduler;
pub mod workflow;

use attune_core::service::{announce_drain, stopping_others};
use attune_core::{Context, Shutdown};

/// Runs the rule engine, the scheduler, the reaper and maintenance until `shutdown`, then
/// drains: each stops claiming, lets the batch in hand commit (a batch is one transaction: nothing is
/// half done, nothing is lost) and returns. One part failing stops the others, and the
/// error is returned once all of them are done.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let stop = shutdown.child_token();
    let engine = rule_engine::RuleEngine::new(ctx.clone());
    let scheduler = scheduler::Scheduler::new(ctx.clone());
    // First, so the drain is announced before the parts log their own ends.
    let ((), a, b, c, d, e, f) = tokio::join!(
        announce_drain(
            &shutdown,
            &stop,
            "executor draining: the rule engine and the scheduler commit the batch in hand"
        ),
        stopping_others(engine.run(stop.clone()), &stop),
        stopping_others(scheduler.run(stop.clone()), &stop),
        stopping_others(reaper::run(ctx.clone(), stop.clone()), &stop),
        stopping_others(maintenance::run(ctx.clone(), stop.clone()), &stop),
        stopping_others(workflow::run(ctx.clone(), stop.clone()), &stop),
        stopping_others(inquiries::run(ctx, stop.clone()), &stop),
    );
    let result = a.and(b).and(c).and(d).and(e).and(f);
    if result.is_ok() {
        tracing::info!("executor stopped");
    }
    result
}
