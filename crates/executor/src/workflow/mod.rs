//! The workflow engine: runs executions of runner type `workflow` (and with-items
//! parents) in the executor; their tasks are child executions that the scheduler admits
//! and the workers run like any other.
//!
//! Every change to a workflow is one transaction: starting it ([`step::Engine::start_round`]
//! claims `scheduled` workflows `FOR UPDATE SKIP LOCKED`), and each later step under the
//! workflow row's lock ([`step::Engine::step`]), which consumes the children that ended
//! (the partial index `execution_unconsumed` is the work set), creates the next children
//! (with-items in batches of [`flow::BATCH`]), cancels on abort or cancel, and ends the
//! workflow. Two completions arriving together are taken in one after the other, so no
//! task starts twice and none is skipped; an executor that dies mid-step loses nothing
//! (the transaction rolls back and another executor takes the same work).
//!
//! - [`flow`]: the state machine (which tasks start, policies, with-items, the end).
//! - [`context`]: the template context and rendering.
//! - [`step`]: loading and storing one step.
//! - [`state`]: the states the engine saved, kept between steps.

pub mod context;
pub mod flow;
pub mod state;
pub mod step;

use std::time::Duration;

use attune_core::domain::RunnerType::Workflow;
use attune_core::wakeup::{Channel, Hint, Tags};
use attune_core::{Context, Shutdown};

const POLL: Duration = Duration::from_secs(1);

/// Runs the engine until `shutdown`; a round in progress always commits first.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let engine = step::Engine::new(ctx.clone());
    let scheduled = ctx.notifier.hint(Channel::Scheduled);
    let cancel = ctx.notifier.hint(Channel::Cancel);
    let change = ctx.notifier.hint(Channel::Change);
    // Woken by scheduled executions of runner type `workflow` (to start), by changes (a
    // task may have ended) and by cancels.
    let wakeup = ctx
        .notifier
        .subscribe_tagged(&[Channel::Scheduled, Channel::Change, Channel::Cancel], Tags::runners([Workflow]))
        .await?;
    while !shutdown.is_cancelled() {
        // The round's look sees everything committed before it, so a wake-up that came
        // before is spent; one that comes during the round (a task that ended meanwhile)
        // is kept and costs another round. The engine's own pokes do not wake it, unless
        // the round left it more to do at once.
        wakeup.clear();
        match round(&engine, &scheduled, &cancel, &change).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "workflow engine round failed; it is retried");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        wakeup.wait(POLL, &shutdown).await;
    }
    tracing::debug!("workflow engine stopped");
    Ok(())
}

/// One round: start claimed workflows, then step those with pending work. True when the
/// engine has more to do at once (run another round without waiting).
async fn round(engine: &step::Engine, scheduled: &Hint, cancel: &Hint, change: &Hint) -> Result<bool, sqlx::Error> {
    let look = engine.look().await?;
    let mut pokes = engine.start_round(look.start).await?;
    let stepped = engine.step_round(look.pending).await?;
    pokes.scheduled = pokes.scheduled.with(stepped.scheduled);
    pokes.cancel |= stepped.cancel;
    pokes.progress |= stepped.progress;
    pokes.again |= stepped.again;
    // Child workflows admitted wake the engines (this one too) by their runner type.
    scheduled.poke_tagged(pokes.scheduled);
    if pokes.cancel {
        cancel.poke();
    }
    if pokes.again {
        // The engines too (another executor may hold the parent's next step).
        change.poke();
    } else if pokes.progress {
        // For the change-log readers only.
        change.poke_tagged(Tags::CHANGES);
    }
    Ok(pokes.again)
}
