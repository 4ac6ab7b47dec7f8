//! One lane's claim loop: take up to the free slots' worth of scheduled executions of the
//! lane's runner types, run each on its own task, hand results to the completer.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_core::domain::RunnerType;
use attune_core::held::Held;
use attune_core::wakeup::{Channel, Tags};
use tokio::sync::{mpsc, Semaphore};

use attune_core::{Context, Shutdown};

use crate::attempts::StartedTx;
use crate::cancel_watch::Cancels;
use crate::complete::Finished;
use crate::registry::Registration;
use crate::runners::{self, Job};
use crate::{claim, prepare};

/// What a lane shares with its worker.
pub struct Shared<'a> {
    pub ctx: &'a Context,
    /// Stops the claiming (the process's shutdown).
    pub shutdown: &'a Shutdown,
    pub registration: &'a Registration,
    /// Executions running here now (reported by the heartbeat).
    pub running: &'a Arc<AtomicU32>,
    /// The cancel switch of every execution running here.
    pub cancels: &'a Cancels,
    /// Where started processes' pids are reported.
    pub started: &'a StartedTx,
}

/// `builtin,shell,python`, for logs.
pub fn names(runtimes: &[RunnerType]) -> String {
    runtimes.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

/// How long a lane waits for a `scheduled` hint before it looks anyway.
pub const POLL: Duration = Duration::from_secs(1);

/// One claim loop: the runner types it takes and the slots it has for them.
pub struct Lane {
    runtimes: Vec<RunnerType>,
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl Lane {
    pub fn new(runtimes: Vec<RunnerType>, capacity: usize) -> Lane {
        Lane { runtimes, slots: Arc::new(Semaphore::new(capacity)), capacity }
    }

    /// Claims and starts executions until shutdown, then waits for the ones it started to
    /// finish.
    pub async fn run(self, worker: Shared<'_>, results: mpsc::Sender<Finished>) -> anyhow::Result<()> {
        let lane = names(&self.runtimes);
        // Woken by executions of its runner types only. Without hints (the LISTEN
        // connection could not be opened) the lane polls.
        let tags = Tags::runners(self.runtimes.iter().copied());
        let wakeup = match worker.ctx.notifier.subscribe_tagged(&[Channel::Scheduled], tags).await {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::error!(lane = %lane, error = %e, "cannot listen for scheduled executions; polling only");
                None
            }
        };
        // One connection for the lane's claims, kept from round to round (see `Held`).
        let mut conn = Held::new(worker.ctx.pool.clone());
        while !worker.shutdown.is_cancelled() {
            let free = self.slots.available_permits();
            if free == 0 {
                // Every slot busy: wait for one to free up (or for shutdown).
                tokio::select! {
                    permit = self.slots.clone().acquire_owned() => drop(permit),
                    _ = worker.shutdown.cancelled() => break,
                }
                // Executions tend to finish together (in-process ones at once): let the
                // others release their slots too, so the next claim takes a batch rather
                // than one execution per round trip.
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            let started = Instant::now();
            let claimed = match conn.get().await {
                Ok(c) => claim::claim(c, worker.registration, &self.runtimes, free).await,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(claimed) => {
                    let mut took = claimed.len();
                    self.start(&worker, claimed, &results).await;
                    if took < free {
                        let limited = match conn.get().await {
                            Ok(c) => claim::claim_limited(c, worker.registration, &self.runtimes, free - took).await,
                            Err(e) => Err(e),
                        };
                        match limited {
                            Ok(claimed) => {
                                took += claimed.len();
                                self.start(&worker, claimed, &results).await;
                            }
                            Err(e) => {
                                conn.reset();
                                tracing::error!(lane = %lane, error = %e, "claim of limited actions failed");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                    tracing::debug!(
                        lane = %lane,
                        rows = took,
                        free,
                        ms = started.elapsed().as_millis() as u64,
                        "claim round"
                    );
                    if took == free {
                        continue;
                    }
                }
                Err(e) => {
                    conn.reset();
                    tracing::error!(lane = %lane, error = %e, "claim failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            match &wakeup {
                Some(w) => w.wait(POLL, worker.shutdown).await,
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = worker.shutdown.cancelled() => {}
                    }
                }
            }
        }
        // Drain: claim nothing more, let what runs finish.
        tracing::info!(worker = %worker.registration.name, lane = %lane, "draining");
        let _all = self.slots.acquire_many(self.capacity as u32).await;
        Ok(())
    }

    /// Prepares and starts what was claimed (committed `running`).
    async fn start(&self, worker: &Shared<'_>, claimed: Vec<claim::Claimed>, results: &mpsc::Sender<Finished>) {
        if claimed.is_empty() {
            return;
        }
        attune_core::metrics::claim_batch(claimed.len());
        worker.ctx.notifier.hint(Channel::Claimed).poke();
        for job in prepare::jobs(worker.ctx, worker.cancels, worker.started, claimed).await {
            self.spawn(worker, job, results.clone());
        }
    }

    /// Runs `job` on its own task, in one of the lane's free slots.
    fn spawn(&self, worker: &Shared<'_>, job: Job, results: mpsc::Sender<Finished>) {
        let permit = self.slots.clone().try_acquire_owned().expect("claimed no more than the free slots");
        let running = worker.running.clone();
        running.fetch_add(1, Ordering::Relaxed);
        attune_core::metrics::worker_slots(1.0);
        let cancels = worker.cancels.clone();
        tokio::spawn(async move {
            let outcome = runners::run(&job).await;
            cancels.lock().expect("cancels lock").remove(&job.execution_id);
            let finished = Finished {
                execution_id: job.execution_id,
                attempt: job.attempt,
                tenant_id: job.tenant_id,
                action_ref: job.action_ref,
                runner_type: job.runner_type,
                outcome,
            };
            // The completer lives until every sender is gone, so this cannot fail.
            let _ = results.send(finished).await;
            running.fetch_sub(1, Ordering::Relaxed);
            attune_core::metrics::worker_slots(-1.0);
            drop(permit);
        });
    }
}
