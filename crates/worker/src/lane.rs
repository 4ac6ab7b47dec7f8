//! One lane's claim loop: take up to the free slots' worth of scheduled executions of the
//! lane's runner types, run each on its own task, hand results to the completer; while idle,
//! take the manual runs and workflow tasks this process hands over (`attune_core::handoff`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_core::domain::RunnerType;
use attune_core::handoff::{Claimed, Handed};
use attune_core::held::Held;
use attune_core::wakeup::{Channel, Tags};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

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
    /// Cancelled when this worker lost its liveness session: what it holds is the reaper's.
    pub lost: &'a Shutdown,
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
    /// finish. While idle it also takes the manual runs and workflow tasks this process
    /// hands to it (`attune_core::handoff`).
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
        let registration = worker.registration;
        let mut door = worker.ctx.lanes.enter(registration.id, &registration.name, &self.runtimes, self.slots.clone());
        // One connection for the lane's claims, kept from round to round (see `Held`).
        let mut conn = Held::new(worker.ctx.pool.clone());
        while !worker.shutdown.is_cancelled() {
            // What was handed over while this lane was busy claiming, first.
            while let Ok(handed) = door.handed.try_recv() {
                self.start_handed(&worker, handed, &results).await;
            }
            // This round's slots: every free one (a hand-off may take one meanwhile).
            let mut slots: Vec<_> = std::iter::from_fn(|| self.slots.clone().try_acquire_owned().ok()).collect();
            let free = slots.len();
            if free == 0 {
                // Every slot busy (or kept for a hand-off): wait for one to free up.
                tokio::select! {
                    permit = self.slots.clone().acquire_owned() => drop(permit),
                    Some(handed) = door.handed.recv() => {
                        self.start_handed(&worker, handed, &results).await;
                        continue;
                    }
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
            // Whether this round saw the queue (a failed claim did not: then the lane does not
            // offer its slots, which could pass work it did not see).
            let mut looked = false;
            let claimed = match conn.get().await {
                Ok(c) => claim::claim(c, registration, &self.runtimes, free).await,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(claimed) => {
                    looked = true;
                    let mut took = claimed.len();
                    if took > 0 {
                        attune_core::metrics::claim_batch(took);
                    }
                    self.start(&worker, claimed, &mut slots, &results).await;
                    if took < free {
                        let limited = match conn.get().await {
                            Ok(c) => claim::claim_limited(c, registration, &self.runtimes, free - took).await,
                            Err(e) => Err(e),
                        };
                        match limited {
                            Ok(claimed) => {
                                if !claimed.is_empty() {
                                    attune_core::metrics::claim_batch(claimed.len());
                                }
                                took += claimed.len();
                                self.start(&worker, claimed, &mut slots, &results).await;
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
            drop(slots);
            // Nothing more waits for this lane (as of its last look): it takes hand-offs
            // until a hint (or the poll interval, or shutdown) ends the wait.
            let wait = async {
                match &wakeup {
                    Some(w) => w.wait(POLL, worker.shutdown).await,
                    None => {
                        tokio::select! {
                            _ = tokio::time::sleep(POLL) => {}
                            _ = worker.shutdown.cancelled() => {}
                        }
                    }
                }
            };
            tokio::pin!(wait);
            door.set_idle(looked);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    Some(handed) = door.handed.recv() => self.start_handed(&worker, handed, &results).await,
                }
            }
            door.set_idle(false);
        }
        // Drain: claim nothing more and take no more hand-offs, start what was handed
        // before, let what runs finish.
        tracing::info!(worker = %registration.name, lane = %lane, "draining");
        door.close();
        let all = self.slots.acquire_many(self.capacity as u32);
        tokio::pin!(all);
        loop {
            tokio::select! {
                _ = &mut all => break,
                Some(handed) = door.handed.recv() => self.start_handed(&worker, handed, &results).await,
            }
        }
        Ok(())
    }

    /// Prepares and starts what was claimed (committed `running`), each in one of `slots`.
    async fn start(
        &self,
        worker: &Shared<'_>,
        claimed: Vec<Claimed>,
        slots: &mut Vec<OwnedSemaphorePermit>,
        results: &mpsc::Sender<Finished>,
    ) {
        if claimed.is_empty() {
            return;
        }
        worker.ctx.notifier.hint(Channel::Claimed).poke();
        for job in prepare::jobs(worker.ctx, worker.cancels, worker.started, claimed).await {
            let slot = slots.pop().expect("claimed no more than the round's slots");
            spawn(worker, job, slot, results.clone());
        }
    }

    /// Starts a run handed over (committed `running` here), in the slot kept for it — unless
    /// this worker was lost meanwhile: the reaper moves such a run on (retried elsewhere or
    /// failed), so it must not start here too.
    async fn start_handed(&self, worker: &Shared<'_>, handed: Handed, results: &mpsc::Sender<Finished>) {
        if worker.lost.is_cancelled() {
            tracing::warn!(execution = handed.claimed.id, "not started: this worker was lost; the reaper moves it on");
            return;
        }
        attune_core::metrics::handed();
        self.start(worker, vec![handed.claimed], &mut vec![handed.slot], results).await;
    }
}

/// Runs `job` on its own task, in `slot` (given back when it ends).
fn spawn(worker: &Shared<'_>, job: Job, slot: OwnedSemaphorePermit, results: mpsc::Sender<Finished>) {
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
        drop(slot);
    });
}
