//! The scheduler: validates requested executions and hands them to the workers.
//!
//! Each round claims a batch of `requested` executions (`FOR UPDATE SKIP LOCKED`) and
//! admits each ([`attune_core::admission`], the rule engine's rules too): it applies the
//! action's parameter defaults and validates against its schema. Invalid parameters
//! end the execution `failed` at once with a message naming the parameter — it never
//! reaches a worker. Valid ones become `scheduled`, and one hint per batch (after the
//! commit) wakes the workers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use attune_core::admission::{admit, ActionTerms};
use attune_core::domain::{ExecutionStatus, ParamSchema, RunnerType};
use attune_core::execution::{schedule, unseal_parameters, Decision};
use attune_core::wakeup::{Channel, Hint, Tags};
use attune_core::{Context, Shutdown};
use serde_json::Value;

pub const BATCH: i64 = 1000;
const POLL: Duration = Duration::from_secs(1);

/// A claimed execution with its action's schema (one row of `claim_requested.sql`).
struct Requested {
    id: i64,
    action_id: Option<i64>,
    action_ref: String,
    runner_type: RunnerType,
    parameters: Value,
    secret_params: Option<Vec<u8>>,
    param_schema: Option<Value>,
    action_enabled: Option<bool>,
    secret_names: Vec<String>,
    action_timeout: Option<i32>,
    preset_timeout: Option<i32>,
    retry: Option<Value>,
}

pub struct Scheduler {
    ctx: Context,
    /// Wakes the workers once a batch is scheduled.
    scheduled: Option<Hint>,
    /// Wakes the change-log readers (notifier, bridge) once a batch is committed.
    changes: Option<Hint>,
}

impl Scheduler {
    pub fn new(ctx: Context) -> Scheduler {
        Scheduler { ctx, scheduled: None, changes: None }
    }

    /// Claims and processes batches until `shutdown`. The drain: no new claim after it, and
    /// the round in progress runs to its commit (executions claimed are never left half done).
    pub async fn run(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.scheduled = Some(self.ctx.notifier.hint(Channel::Scheduled));
        self.changes = Some(self.ctx.notifier.hint(Channel::Change));
        let wakeup = self.ctx.notifier.subscribe(&[Channel::Requested]).await?;
        while !shutdown.is_cancelled() {
            match self.round().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "scheduler round failed; the executions stay requested");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
            // Only this wait is cut short by shutdown, never a round: the batch in hand
            // always commits (or rolls back whole) before the loop ends.
            wakeup.wait(POLL, &shutdown).await;
        }
        tracing::debug!("scheduler stopped");
        Ok(())
    }

    /// Claims and decides one batch; returns how many executions it took.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let started = Instant::now();
        let mut tx = self.ctx.pool.begin().await?;
        let requested = sqlx::query_file_as!(Requested, "../../sql/executor/claim_requested.sql", BATCH)
            .fetch_all(&mut *tx)
            .await?;
        if requested.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // One parsed schema per action per batch.
        let mut schemas: HashMap<i64, Result<ParamSchema, String>> = HashMap::new();
        // Who to wake: the workers of the runner types admitted.
        let mut admitted = Tags::NONE;
        let mut decisions = Vec::with_capacity(requested.len());
        for r in requested {
            let runner_type = r.runner_type;
            let decision = self.decide(r, &mut schemas);
            if decision.status == ExecutionStatus::Scheduled {
                admitted = admitted.with(Tags::runners([runner_type]));
            }
            decisions.push(decision);
        }
        let rows = decisions.len();
        schedule(&mut tx, decisions).await?;
        tx.commit().await?;
        if let (false, Some(hint)) = (rows == 0, &self.changes) {
            // For the change-log readers only: no workflow's task is admitted here.
            hint.poke_tagged(Tags::CHANGES);
        }
        if let Some(hint) = &self.scheduled {
            hint.poke_tagged(admitted);
        }
        tracing::debug!(rows, ms = started.elapsed().as_millis() as u64, "scheduler round");
        Ok(rows)
    }

    fn decide(&self, r: Requested, schemas: &mut HashMap<i64, Result<ParamSchema, String>>) -> Decision {
        let schema = match (r.action_id, r.param_schema.as_ref()) {
            (Some(id), Some(raw)) => Some(&*schemas.entry(id).or_insert_with(|| ParamSchema::parse(raw))),
            _ => None,
        };
        let terms = ActionTerms {
            action_ref: &r.action_ref,
            runner_type: r.runner_type,
            enabled: r.action_enabled.unwrap_or(false),
            schema,
            secret_names: &r.secret_names,
            timeout_seconds: r.preset_timeout.or(r.action_timeout),
            retry: r.retry.as_ref(),
        };
        let plain = unseal_parameters(&self.ctx.keys.encryption, &r.parameters, r.secret_params.as_deref());
        let admission = admit(&self.ctx, &terms, plain);
        Decision {
            id: r.id,
            status: admission.status,
            // A failed one keeps what it was given (secrets still sealed).
            parameters: if admission.status == ExecutionStatus::Failed { r.parameters } else { admission.parameters },
            secret_params: if admission.status == ExecutionStatus::Failed {
                r.secret_params
            } else {
                admission.secret_params
            },
            result: admission.result,
            max_attempts: admission.max_attempts,
            timeout_seconds: admission.timeout_seconds,
        }
    }
}
