//! Attune executor: turns events into executions and keeps executions moving.
//!
//! # Layout
//! - [`rule_engine`]: claims unprocessed events, matches rules (criteria), renders action
//!   parameters, admits the executions ([`attune_core::admission`]) and writes the
//!   enforcements and `scheduled` (or `failed`) executions — one transaction a batch.
//! - [`scheduler`]: validates requested executions against their action's schema and
//!   schedules them for the workers (or fails them at once, naming the bad parameter).
//! - [`reaper`]: retries or fails the running executions of workers that stopped
//!   heart-beating (and ends the ones they were canceling `canceled`).
//!
//! The rule engine (woken on `Event` and `Rule`) and the scheduler (on `Requested`)
//! subscribe through the process's notifier (`ctx.notifier`) and poll every second as a
//! fallback; both hint `Scheduled` for the workers. The reaper runs every few seconds.
//! Several executors may run against one database: every claim is `FOR UPDATE SKIP LOCKED`.
//! Later issues add the workflow engine and inquiry expiry here.

pub mod reaper;
pub mod rule_engine;
pub mod scheduler;

use attune_core::{Context, Shutdown};

/// Runs the rule engine, the scheduler and the reaper until `shutdown`.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let engine = rule_engine::RuleEngine::new(ctx.clone());
    let scheduler = scheduler::Scheduler::new(ctx.clone());
    let (a, b, c) =
        tokio::join!(engine.run(shutdown.clone()), scheduler.run(shutdown.clone()), reaper::run(ctx, shutdown.clone()));
    a.and(b).and(c)
}
