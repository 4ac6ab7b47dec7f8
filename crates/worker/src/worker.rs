//! The worker's life: it registers, then runs its heartbeat, its completer, its cancel
//! watcher and its two lanes; at shutdown the lanes stop claiming and drain, the completer
//! flushes, and the worker deregisters.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use attune_core::domain::RunnerType;
use attune_core::wakeup::Channel;
use attune_core::{Context, Shutdown};
use tokio::sync::mpsc;

use crate::attempts::{self, StartedTx};
use crate::cancel_watch::{self, Cancels};
use crate::complete::{self, Finished};
use crate::lane::{names, Lane, Shared};
use crate::registry::{self, Liveness, Registration};
use crate::IN_PROCESS_SLOTS;

/// Results waiting for the completer, at most.
const RESULTS_QUEUE: usize = 4096;

pub struct Worker {
    ctx: Context,
    /// Stops the claiming (the process's shutdown).
    shutdown: Shutdown,
    registration: Registration,
    /// The session whose life is this worker's (taken by `run`).
    liveness: Option<Liveness>,
    /// Executions running here now (reported by the heartbeat).
    running: Arc<AtomicU32>,
    /// The cancel switch of every execution running here.
    cancels: Cancels,
}

impl Worker {
    pub async fn start(ctx: Context, shutdown: Shutdown) -> anyhow::Result<Worker> {
        // Actions run as this process's user: keep them from reading its memory and its
        // environment (database URL, keys) through /proc. (Root ignores this; run workers
        // as an unprivileged user — docs/security.md.)
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            tracing::warn!(error = %e, "cannot mark the worker non-dumpable");
        }
        let capacity = ctx.config.worker.concurrency;
        crate::runners::warm::configure(crate::runners::warm::WarmConfig {
            max: ctx.config.worker.warm_python_pool,
            idle: std::time::Duration::from_secs(ctx.config.worker.warm_python_idle_seconds),
        });
        let runtimes = RunnerType::AVAILABLE;
        let (registration, liveness) = registry::register(&ctx.pool, &runtimes, capacity).await?;
        tracing::info!(
            worker = %registration.name,
            instance = %registration.instance,
            capacity,
            runtimes = names(&runtimes),
            "worker registered"
        );
        Ok(Worker {
            ctx,
            shutdown,
            registration,
            liveness: Some(liveness),
            running: Arc::new(AtomicU32::new(0)),
            cancels: Default::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.registration.name
    }

    fn shared<'a>(&'a self, stop_claiming: &'a Shutdown, lost: &'a Shutdown, started: &'a StartedTx) -> Shared<'a> {
        Shared {
            ctx: &self.ctx,
            shutdown: stop_claiming,
            registration: &self.registration,
            running: &self.running,
            cancels: &self.cancels,
            started,
            lost,
        }
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let beat_stop = Shutdown::new();
        let lost = Shutdown::new();
        let liveness = self.liveness.take().expect("run once");
        let heartbeat = registry::spawn_heartbeat(
            liveness,
            self.registration.id,
            self.running.clone(),
            beat_stop.clone(),
            lost.clone(),
        );
        // Claiming stops at shutdown, or when this worker lost its liveness session: then
        // the reaper hands its executions to others, so it stops their processes too and
        // reports nothing more (the completer drops what comes after).
        let stop_claiming = Shutdown::new();
        let watch_lost = tokio::spawn({
            let (shutdown, lost, stop_claiming, cancels) =
                (self.shutdown.clone(), lost.clone(), stop_claiming.clone(), self.cancels.clone());
            async move {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = lost.cancelled() => {
                        for cancel in cancels.lock().expect("cancels lock").values() {
                            cancel.cancel();
                        }
                    }
                }
                stop_claiming.cancel();
            }
        });
        let (tx, rx) = mpsc::channel::<Finished>(RESULTS_QUEUE);
        let completer = tokio::spawn(complete::run(
            self.ctx.pool.clone(),
            self.registration.clone(),
            rx,
            lost.clone(),
            self.ctx.notifier.hint(Channel::Change),
        ));
        let watcher = tokio::spawn(cancel_watch::run(
            self.ctx.clone(),
            self.registration.id,
            self.cancels.clone(),
            beat_stop.clone(),
        ));

        let (processes, in_process) = lane_runtimes();
        let processes = Lane::new(processes, self.ctx.config.worker.concurrency);
        let in_process = Lane::new(in_process, IN_PROCESS_SLOTS);
        let (started, recorder) = attempts::recorder(self.ctx.pool.clone());
        let (a, b) = tokio::join!(
            processes.run(self.shared(&stop_claiming, &lost, &started), tx.clone()),
            in_process.run(self.shared(&stop_claiming, &lost, &started), tx)
        );
        // Every sender is gone once both lanes drained: the completer flushes and ends.
        let _ = completer.await;
        drop(started);
        let _ = recorder.await;
        watch_lost.abort();
        if lost.is_cancelled() {
            beat_stop.cancel();
            let _ = watcher.await;
            anyhow::bail!(
                "worker {} lost its liveness session; its executions were handed back to be retried or failed",
                self.registration.name
            );
        }
        // Deregistered while the liveness lock is still held, so the reaper never sees a
        // worker that stopped cleanly as lost.
        let deregistered = registry::deregister(&self.ctx.pool, self.registration.id).await;
        beat_stop.cancel();
        let _ = heartbeat.await;
        let _ = watcher.await;
        deregistered?;
        tracing::info!(worker = %self.registration.name, "worker stopped");
        a.and(b)
    }
}

/// The runner types of the two lanes: (child processes, in-process), together every
/// available one.
fn lane_runtimes() -> (Vec<RunnerType>, Vec<RunnerType>) {
    let (in_process, processes) = RunnerType::AVAILABLE.into_iter().partition(|r| r.in_process());
    (processes, in_process)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_runner_type_has_one_lane() {
        let (processes, in_process) = lane_runtimes();
        assert_eq!(processes, [RunnerType::Shell, RunnerType::Python, RunnerType::Node, RunnerType::Container]);
        assert_eq!(in_process, [RunnerType::Builtin, RunnerType::Http]);
        assert_eq!(names(&RunnerType::AVAILABLE), "builtin,shell,python,node,http,container");
    }
}
