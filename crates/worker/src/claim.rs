//! The claim loop: take up to the free slots' worth of scheduled executions in one
//! statement, run each on its own task, hand results to the completer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_core::execution::unseal_parameters;
use attune_core::wakeup::Wakeup;
use attune_core::{crypto, Context, Shutdown};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::complete::{self, Finished};
use crate::registry::{self, Registration};
use crate::runners::{self, Job};
use crate::{IN_PROCESS_SLOTS, PROCESS_RUNTIMES, RUNTIMES};

const POLL: Duration = Duration::from_secs(1);

/// A claimed execution with what running it needs (one row of `sql/worker/claim.sql`).
#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    tenant_id: i64,
    action_ref: String,
    runner_type: String,
    parameters: Value,
    secret_params: Option<Vec<u8>>,
    attempt: i32,
    timeout_seconds: Option<i32>,
    entry_point: Option<String>,
    command: Option<String>,
    code: Option<String>,
    secret_names: Vec<String>,
    secrets: Vec<String>,
    pack_path: Option<String>,
}

pub struct Worker {
    ctx: Context,
    shutdown: Shutdown,
    registration: Registration,
    running: Arc<AtomicU32>,
    /// The cancel switch of every execution running here.
    cancels: Arc<Mutex<HashMap<i64, Shutdown>>>,
    /// Signs each execution's `context.api_token`.
    tokens: attune_core::tokens::TokenKeys,
}

/// One claim loop: the runner types it takes and the slots it has for them.
#[derive(Clone)]
struct Lane {
    runtimes: Vec<String>,
    slots: Arc<Semaphore>,
    capacity: usize,
}

impl Lane {
    fn new(runtimes: &[&str], capacity: usize) -> Lane {
        Lane {
            runtimes: runtimes.iter().map(|s| s.to_string()).collect(),
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }
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
        let registration = registry::register(&ctx.pool, RUNTIMES, capacity).await?;
        tracing::info!(worker = %registration.name, capacity, runtimes = RUNTIMES.join(","), "worker registered");
        let auth = &ctx.config.auth;
        let tokens = attune_core::tokens::TokenKeys::new(
            &ctx.keys.jwt_secret,
            auth.access_token_ttl_seconds,
            auth.refresh_token_ttl_seconds,
        );
        Ok(Worker {
            ctx,
            shutdown,
            registration,
            running: Arc::new(AtomicU32::new(0)),
            cancels: Default::default(),
            tokens,
        })
    }

    pub fn name(&self) -> &str {
        &self.registration.name
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let beat_stop = Shutdown::new();
        let heartbeat = registry::spawn_heartbeat(
            self.ctx.pool.clone(),
            self.registration.id,
            self.running.clone(),
            beat_stop.clone(),
        );
        let (tx, rx) = mpsc::channel::<Finished>(4096);
        let completer = tokio::spawn(complete::run(self.ctx.pool.clone(), self.registration.name.clone(), rx));

        let watcher = tokio::spawn(watch_cancels(
            self.ctx.pool.clone(),
            self.registration.id,
            self.cancels.clone(),
            beat_stop.clone(),
        ));
        let processes = Lane::new(PROCESS_RUNTIMES, self.ctx.config.worker.concurrency);
        let in_process = Lane::new(&["builtin"], IN_PROCESS_SLOTS);
        let (a, b) = tokio::join!(self.claim_loop(processes, tx.clone()), self.claim_loop(in_process, tx));
        // Every sender is gone once both lanes drained: the completer flushes and ends.
        let _ = completer.await;
        beat_stop.cancel();
        let _ = heartbeat.await;
        let _ = watcher.await;
        registry::deregister(&self.ctx.pool, self.registration.id).await?;
        tracing::info!(worker = %self.registration.name, "worker stopped");
        a.and(b)
    }

    /// Claims and starts executions of `lane` until shutdown, then waits for the ones it
    /// started to finish.
    async fn claim_loop(&self, lane: Lane, results: mpsc::Sender<Finished>) -> anyhow::Result<()> {
        let wakeup = Wakeup::listen(&self.ctx.pool, &["attune_scheduled"], self.shutdown.clone()).await?;
        while !self.shutdown.is_cancelled() {
            let free = lane.slots.available_permits();
            if free == 0 {
                // Every slot busy: wait for one to free up (or for shutdown).
                tokio::select! {
                    permit = lane.slots.clone().acquire_owned() => drop(permit),
                    _ = self.shutdown.cancelled() => break,
                }
                // Executions tend to finish together (in-process ones at once): let the
                // others release their slots too, so the next claim takes a batch rather
                // than one execution per round trip.
                for _ in 0..4 {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            match self.claim(&lane.runtimes, free).await {
                Ok(jobs) => {
                    let took = jobs.len();
                    for job in jobs {
                        self.spawn(&lane, job, results.clone());
                    }
                    if took == free {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "claim failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            wakeup.wait(POLL, &self.shutdown).await;
        }
        // Drain: claim nothing more, let what runs finish.
        tracing::info!(worker = %self.registration.name, lane = lane.runtimes.join(","), "draining");
        let _all = lane.slots.acquire_many(lane.capacity as u32).await;
        Ok(())
    }

    fn spawn(&self, lane: &Lane, job: Job, results: mpsc::Sender<Finished>) {
        let permit = lane.slots.clone().try_acquire_owned().expect("claimed no more than the free slots");
        let running = self.running.clone();
        running.fetch_add(1, Ordering::Relaxed);
        let cancels = self.cancels.clone();
        tokio::spawn(async move {
            let outcome = runners::run(&job).await;
            cancels.lock().expect("cancels lock").remove(&job.execution_id);
            let finished = Finished {
                execution_id: job.execution_id,
                tenant_id: job.tenant_id,
                action_ref: job.action_ref,
                outcome,
            };
            // The completer lives until every sender is gone, so this cannot fail.
            let _ = results.send(finished).await;
            running.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }

    /// Claims up to `free` executions and prepares their jobs. The claim itself is one
    /// statement (it also records `execution.started`); only actions that declare
    /// datastore secrets cost one more query each.
    async fn claim(&self, runtimes: &[String], free: usize) -> Result<Vec<Job>, sqlx::Error> {
        let mut claimed: Vec<Claimed> = sqlx::query_as(include_str!("../../../sql/worker/claim.sql"))
            .bind(self.registration.id)
            .bind(runtimes)
            .bind(free as i64)
            .bind(&self.registration.name)
            .bind(None::<i64>)
            .fetch_all(&self.ctx.pool)
            .await?;
        if claimed.len() < free {
            let more = self.claim_limited(runtimes, free - claimed.len()).await?;
            claimed.extend(more);
        }
        // The rows are committed `running` now: every one becomes a job, and a job that
        // cannot be prepared fails with the reason rather than vanishing.
        let mut jobs = Vec::with_capacity(claimed.len());
        for c in claimed {
            let secrets = if c.secrets.is_empty() {
                Ok(Map::new())
            } else {
                self.datastore_secrets(c.tenant_id, &c.secrets)
                    .await
                    .map_err(|e| format!("cannot read the action's secrets: {e}"))
            };
            jobs.push(self.job(c, secrets));
        }
        Ok(jobs)
    }

    /// Claims executions of actions with a `concurrency` limit: each such action's row is
    /// locked while its running executions are counted and the free ones claimed, so the
    /// limit holds across every worker.
    async fn claim_limited(&self, runtimes: &[String], mut free: usize) -> Result<Vec<Claimed>, sqlx::Error> {
        let mut tx = self.ctx.pool.begin().await?;
        let limited: Vec<(i64, i32)> = sqlx::query_as(include_str!("../../../sql/worker/limited_actions.sql"))
            .bind(runtimes)
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::new();
        for (action_id, slots) in limited {
            let take = (slots.max(0) as usize).min(free);
            if take == 0 {
                continue;
            }
            let rows: Vec<Claimed> = sqlx::query_as(include_str!("../../../sql/worker/claim.sql"))
                .bind(self.registration.id)
                .bind(runtimes)
                .bind(take as i64)
                .bind(&self.registration.name)
                .bind(Some(action_id))
                .fetch_all(&mut *tx)
                .await?;
            free -= rows.len();
            claimed.extend(rows);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    fn job(&self, c: Claimed, secrets: Result<Map<String, Value>, String>) -> Job {
        let config = &self.ctx.config;
        let (parameters, unsealed) =
            match unseal_parameters(&self.ctx.keys.encryption_key, &c.parameters, c.secret_params.as_deref()) {
                Ok(p) => (p, Ok(())),
                Err(e) => (c.parameters.clone(), Err(e)),
            };
        let (secrets, unrunnable) = match (secrets, unsealed) {
            (Ok(s), Ok(())) => (s, None),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(execution = c.id, error = %e, "execution cannot run");
                (Map::new(), Some(e))
            }
        };
        let timeout = c.timeout_seconds.map_or(config.worker.default_timeout_seconds, |t| t.max(1) as u64);
        Job {
            execution_id: c.id,
            tenant_id: c.tenant_id,
            action_ref: c.action_ref,
            runner_type: c.runner_type,
            parameters,
            secret_names: c.secret_names,
            secrets,
            attempt: c.attempt,
            timeout: Duration::from_secs(timeout),
            entry_point: c.entry_point,
            command: c.command,
            code: c.code,
            pack_dir: c.pack_path.map(PathBuf::from),
            api_url: config.public_url(),
            max_output_bytes: config.worker.max_output_bytes,
            // Valid while the execution may run (its timeout, and a minute to spare).
            api_token: self.tokens.issue_execution_token(c.tenant_id, c.id, timeout as i64 + 60),
            unrunnable,
            cancel: {
                let token = Shutdown::new();
                self.cancels.lock().expect("cancels lock").insert(c.id, token.clone());
                token
            },
        }
    }

    /// The action's declared datastore keys, decrypted (missing or expired keys are absent).
    async fn datastore_secrets(&self, tenant_id: i64, keys: &[String]) -> Result<Map<String, Value>, sqlx::Error> {
        let rows: Vec<(String, Option<Value>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT key, value, ciphertext FROM attune.datastore_item
              WHERE tenant_id = $1 AND scope = 'tenant' AND key = ANY($2) AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(tenant_id)
        .bind(keys)
        .fetch_all(&self.ctx.pool)
        .await?;
        let mut out = Map::new();
        for (key, value, ciphertext) in rows {
            let value = match ciphertext {
                Some(c) => match crypto::decrypt(&self.ctx.keys.encryption_key, &c) {
                    Ok(plain) => {
                        serde_json::from_slice(&plain).unwrap_or(Value::String(String::from_utf8_lossy(&plain).into()))
                    }
                    Err(e) => {
                        tracing::error!(key = %key, error = e, "cannot decrypt a datastore secret");
                        continue;
                    }
                },
                None => value.unwrap_or(Value::Null),
            };
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// Cancels the executions of this worker that someone asked to cancel (`canceling`):
/// woken by the `attune_cancel` hint, and polling every second as the safety net.
async fn watch_cancels(
    pool: sqlx::PgPool,
    worker_id: i64,
    cancels: Arc<Mutex<HashMap<i64, Shutdown>>>,
    stop: Shutdown,
) {
    let wakeup = match Wakeup::listen(&pool, &["attune_cancel"], stop.clone()).await {
        Ok(w) => w,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for cancel requests; polling only");
            return poll_cancels(pool, worker_id, cancels, stop).await;
        }
    };
    while !stop.is_cancelled() {
        cancel_requested(&pool, worker_id, &cancels).await;
        wakeup.wait(POLL, &stop).await;
    }
}

async fn poll_cancels(pool: sqlx::PgPool, worker_id: i64, cancels: Arc<Mutex<HashMap<i64, Shutdown>>>, stop: Shutdown) {
    while !stop.is_cancelled() {
        cancel_requested(&pool, worker_id, &cancels).await;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => {}
        }
    }
}

async fn cancel_requested(pool: &sqlx::PgPool, worker_id: i64, cancels: &Mutex<HashMap<i64, Shutdown>>) {
    if cancels.lock().expect("cancels lock").is_empty() {
        return;
    }
    let ids: Vec<i64> =
        match sqlx::query_scalar("SELECT id FROM attune.execution WHERE worker_id = $1 AND status = 'canceling'")
            .bind(worker_id)
            .fetch_all(pool)
            .await
        {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read cancel requests");
                return;
            }
        };
    let cancels = cancels.lock().expect("cancels lock");
    for id in ids {
        if let Some(token) = cancels.get(&id) {
            token.cancel();
        }
    }
}
