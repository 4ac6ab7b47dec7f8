//! Attune executor: turns events into executions and keeps executions moving.
//!
//! # Layout
//! - [`rule_engine`]: claims unprocessed events, matches rules (criteria), renders action
//!   parameters, writes enforcements and `requested` executions — one transaction a batch.
//! - [`scheduler`]: validates requested executions against their action's schema and
//!   schedules them for the workers (or fails them at once, naming the bad parameter).
//! - [`reaper`]: fails the executions of workers that stopped heart-beating.
//!
//! Each stage LISTENs for its wake-up and polls every second as a fallback. Several
//! executors may run against one database: every claim is `FOR UPDATE SKIP LOCKED`.
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
