//! The claim loop: take up to the free slots' worth of scheduled executions in one
//! statement, run each on its own task, hand results to the completer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attune_core::audit::{self, Actor, Entry};
use attune_core::execution::unseal_parameters;
use attune_core::wakeup::Wakeup;
use attune_core::{crypto, Context, Shutdown};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::complete::{self, Finished};
use crate::registry::{self, Registration};
use crate::runners::{self, Job};
use crate::RUNTIMES;

const POLL: Duration = Duration::from_secs(1);

#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    tenant_id: i64,
    action_id: Option<i64>,
    action_ref: String,
    runner_type: String,
    parameters: Value,
    secret_params: Option<Vec<u8>>,
    attempt: i32,
    timeout_seconds: Option<i32>,
}

#[derive(sqlx::FromRow, Clone)]
struct ActionDetails {
    id: i64,
    entry_point: Option<String>,
    command: Option<String>,
    code: Option<String>,
    secret_params: Vec<String>,
    secrets: Vec<String>,
    pack_path: Option<String>,
}

pub struct Worker {
    ctx: Context,
    shutdown: Shutdown,
    registration: Registration,
    slots: Arc<Semaphore>,
    capacity: usize,
    running: Arc<AtomicU32>,
}

impl Worker {
    pub async fn start(ctx: Context, shutdown: Shutdown) -> anyhow::Result<Worker> {
        let capacity = ctx.config.worker.concurrency;
        let registration = registry::register(&ctx.pool, RUNTIMES, capacity).await?;
        tracing::info!(worker = %registration.name, capacity, runtimes = RUNTIMES.join(","), "worker registered");
        Ok(Worker {
            ctx,
            shutdown,
            registration,
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            running: Arc::new(AtomicU32::new(0)),
        })
    }

    pub fn name(&self) -> &str {
        &self.registration.name
    }

    pub async fn run(self) -> anyhow::Result<()> {
        let wakeup = Wakeup::listen(&self.ctx.pool, &["attune_scheduled"], self.shutdown.clone()).await?;
        let beat_stop = Shutdown::new();
        let heartbeat = registry::spawn_heartbeat(
            self.ctx.pool.clone(),
            self.registration.id,
            self.running.clone(),
            beat_stop.clone(),
        );
        let (tx, rx) = mpsc::channel::<Finished>(4096);
        let completer = tokio::spawn(complete::run(self.ctx.pool.clone(), self.registration.name.clone(), rx));

        while !self.shutdown.is_cancelled() {
            let free = self.slots.available_permits();
            if free == 0 {
                // Every slot busy: wait for one to free up (or for shutdown).
                tokio::select! {
                    permit = self.slots.clone().acquire_owned() => drop(permit),
                    _ = self.shutdown.cancelled() => break,
                }
                continue;
            }
            match self.claim(free).await {
                Ok(jobs) => {
                    let took = jobs.len();
                    for job in jobs {
                        self.spawn(job, tx.clone());
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

        // Drain: claim nothing more, let running executions finish, flush their results.
        tracing::info!(worker = %self.registration.name, running = self.running.load(Ordering::Relaxed), "worker draining");
        let _all = self.slots.acquire_many(self.capacity as u32).await;
        drop(tx);
        let _ = completer.await;
        beat_stop.cancel();
        let _ = heartbeat.await;
        registry::deregister(&self.ctx.pool, self.registration.id).await?;
        tracing::info!(worker = %self.registration.name, "worker stopped");
        Ok(())
    }

    fn spawn(&self, job: Job, results: mpsc::Sender<Finished>) {
        let permit = self.slots.clone().try_acquire_owned().expect("claimed no more than the free slots");
        let running = self.running.clone();
        running.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let outcome = runners::run(&job).await;
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

    /// Claims up to `free` executions and prepares their jobs, in one transaction that
    /// also records `execution.started`.
    async fn claim(&self, free: usize) -> Result<Vec<Job>, sqlx::Error> {
        let mut tx = self.ctx.pool.begin().await?;
        let claimed: Vec<Claimed> = sqlx::query_as(include_str!("../../../sql/worker/claim.sql"))
            .bind(self.registration.id)
            .bind(RUNTIMES.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .bind(free as i64)
            .fetch_all(&mut *tx)
            .await?;
        if claimed.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = claimed.iter().filter_map(|c| c.action_id).collect();
        let actions: HashMap<i64, ActionDetails> = sqlx::query_as::<_, ActionDetails>(
            "SELECT a.id, a.entry_point, a.command, a.code, a.secret_params, a.secrets, p.path AS pack_path
               FROM attune.action a JOIN attune.pack p ON p.id = a.pack_id WHERE a.id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();
        let mut secrets_by_tenant: HashMap<(i64, i64), Map<String, Value>> = HashMap::new();
        for c in &claimed {
            if let Some(a) = c.action_id.and_then(|id| actions.get(&id)).filter(|a| !a.secrets.is_empty()) {
                let values = self.datastore_secrets(&mut tx, c.tenant_id, &a.secrets).await?;
                secrets_by_tenant.insert((c.tenant_id, a.id), values);
            }
        }
        let entries: Vec<Entry> = claimed
            .iter()
            .map(|c| Entry {
                tenant_id: Some(c.tenant_id),
                actor: Actor::worker(&self.registration.name),
                action: "execution.started".into(),
                entity_type: "execution".into(),
                entity_id: c.id.to_string(),
                data: json!({"action": c.action_ref, "attempt": c.attempt}),
            })
            .collect();
        audit::record(&mut tx, &entries).await?;
        tx.commit().await?;

        Ok(claimed
            .into_iter()
            .map(|c| {
                let action = c.action_id.and_then(|id| actions.get(&id)).cloned();
                let secrets =
                    action.as_ref().and_then(|a| secrets_by_tenant.remove(&(c.tenant_id, a.id))).unwrap_or_default();
                self.job(c, action, secrets)
            })
            .collect())
    }

    fn job(&self, c: Claimed, action: Option<ActionDetails>, secrets: Map<String, Value>) -> Job {
        let config = &self.ctx.config;
        let parameters = unseal_parameters(&self.ctx.keys.encryption_key, &c.parameters, c.secret_params.as_deref())
            .unwrap_or_else(|e| {
                tracing::error!(execution = c.id, error = %e, "cannot unseal secret parameters");
                c.parameters.clone()
            });
        let timeout = c.timeout_seconds.map_or(config.worker.default_timeout_seconds, |t| t.max(1) as u64);
        Job {
            execution_id: c.id,
            tenant_id: c.tenant_id,
            action_ref: c.action_ref,
            runner_type: c.runner_type,
            parameters,
            secret_names: action.as_ref().map(|a| a.secret_params.clone()).unwrap_or_default(),
            secrets,
            attempt: c.attempt,
            timeout: Duration::from_secs(timeout),
            entry_point: action.as_ref().and_then(|a| a.entry_point.clone()),
            command: action.as_ref().and_then(|a| a.command.clone()),
            code: action.as_ref().and_then(|a| a.code.clone()),
            pack_dir: action.as_ref().and_then(|a| a.pack_path.clone()).map(PathBuf::from),
            api_url: config.public_url(),
            max_output_bytes: config.worker.max_output_bytes,
        }
    }

    /// The action's declared datastore keys, decrypted (missing or expired keys are absent).
    async fn datastore_secrets(
        &self,
        conn: &mut sqlx::PgConnection,
        tenant_id: i64,
        keys: &[String],
    ) -> Result<Map<String, Value>, sqlx::Error> {
        let rows: Vec<(String, Option<Value>, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT key, value, ciphertext FROM attune.datastore_item
              WHERE tenant_id = $1 AND scope = 'tenant' AND key = ANY($2) AND (expires_at IS NULL OR expires_at > now())",
        )
        .bind(tenant_id)
        .bind(keys)
        .fetch_all(conn)
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
