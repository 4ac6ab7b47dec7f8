//! The scheduler: validates requested executions and hands them to the workers.
//!
//! Each round claims a batch of `requested` executions (`FOR UPDATE SKIP LOCKED`), applies
//! each action's parameter defaults and validates against its schema. Invalid parameters
//! end the execution `failed` at once with a message naming the parameter — it never
//! reaches a worker. Valid ones become `scheduled`, and one hint per batch (after the
//! commit) wakes the workers.

use std::collections::HashMap;
use std::time::Duration;

use attune_core::domain::ParamSchema;
use attune_core::execution::{seal_secrets, unseal_parameters};
use attune_core::wakeup::{Hint, Wakeup};
use attune_core::{Context, Shutdown};
use serde_json::{json, Value};

pub const BATCH: i64 = 1000;
/// Runner types no worker of this version runs yet: their executions fail at once with a
/// clear reason instead of waiting forever in `scheduled`.
const NOT_YET_RUNNABLE: &[&str] = &["node", "http", "container", "workflow", "inquiry"];
const POLL: Duration = Duration::from_secs(1);

/// A claimed execution with its action's schema (one row of `claim_requested.sql`).
#[derive(sqlx::FromRow)]
struct Requested {
    id: i64,
    action_id: Option<i64>,
    action_ref: String,
    runner_type: String,
    parameters: Value,
    secret_params: Option<Vec<u8>>,
    param_schema: Option<Value>,
    action_enabled: Option<bool>,
    secret_names: Vec<String>,
    action_timeout: Option<i32>,
    retry: Option<Value>,
}

/// The decision for one execution.
struct Decision {
    id: i64,
    status: &'static str,
    parameters: Value,
    secret_params: Option<Vec<u8>>,
    result: Option<Value>,
    max_attempts: i32,
    timeout_seconds: i32,
}

pub struct Scheduler {
    ctx: Context,
    /// Wakes the workers once a batch is scheduled.
    scheduled: Option<Hint>,
}

impl Scheduler {
    pub fn new(ctx: Context) -> Scheduler {
        Scheduler { ctx, scheduled: None }
    }

    pub async fn run(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.scheduled = Some(Hint::spawn(self.ctx.pool.clone(), "attune_scheduled", shutdown.clone()));
        let wakeup = Wakeup::listen(&self.ctx.pool, &["attune_requested"], shutdown.clone()).await?;
        while !shutdown.is_cancelled() {
            match self.round().await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "scheduler round failed; the executions stay requested");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            wakeup.wait(POLL, &shutdown).await;
        }
        Ok(())
    }

    /// Claims and decides one batch; returns how many executions it took.
    pub async fn round(&self) -> Result<usize, sqlx::Error> {
        let mut tx = self.ctx.pool.begin().await?;
        let requested: Vec<Requested> = sqlx::query_as(include_str!("../../../sql/executor/claim_requested.sql"))
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
        if requested.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // One parsed schema per action per batch.
        let mut schemas: HashMap<i64, Result<ParamSchema, String>> = HashMap::new();
        let decisions: Vec<Decision> = requested.into_iter().map(|r| self.decide(r, &mut schemas)).collect();
        sqlx::query(include_str!("../../../sql/executor/schedule.sql"))
            .bind(decisions.iter().map(|d| d.id).collect::<Vec<_>>())
            .bind(decisions.iter().map(|d| d.status).collect::<Vec<_>>())
            .bind(decisions.iter().map(|d| d.parameters.clone()).collect::<Vec<_>>())
            .bind(decisions.iter().map(|d| d.secret_params.clone()).collect::<Vec<_>>())
            .bind(decisions.iter().map(|d| d.result.clone()).collect::<Vec<_>>())
            .bind(decisions.iter().map(|d| d.max_attempts).collect::<Vec<_>>())
            .bind(decisions.iter().map(|d| d.timeout_seconds).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if decisions.iter().any(|d| d.status == "scheduled") {
            if let Some(hint) = &self.scheduled {
                hint.poke();
            }
        }
        Ok(decisions.len())
    }

    fn decide(&self, r: Requested, schemas: &mut HashMap<i64, Result<ParamSchema, String>>) -> Decision {
        let schema = match (r.action_id, r.param_schema.as_ref()) {
            (Some(id), Some(raw)) => Some(&*schemas.entry(id).or_insert_with(|| ParamSchema::parse(raw))),
            _ => None,
        };
        let terms = ActionTerms {
            action_ref: &r.action_ref,
            runner_type: &r.runner_type,
            enabled: r.action_enabled.unwrap_or(false),
            schema,
            secret_names: &r.secret_names,
            timeout_seconds: r.action_timeout,
            retry: r.retry.as_ref(),
        };
        let plain = unseal_parameters(&self.ctx.keys.encryption_key, &r.parameters, r.secret_params.as_deref());
        let admission = admit(&self.ctx, &terms, plain);
        Decision {
            id: r.id,
            status: admission.status,
            // A failed one keeps what it was given (secrets still sealed).
            parameters: if admission.status == "failed" { r.parameters } else { admission.parameters },
            secret_params: if admission.status == "failed" { r.secret_params } else { admission.secret_params },
            result: admission.result,
            max_attempts: admission.max_attempts,
            timeout_seconds: admission.timeout_seconds,
        }
    }
}

/// What admission needs to know of an execution's action.
pub struct ActionTerms<'a> {
    pub action_ref: &'a str,
    pub runner_type: &'a str,
    pub enabled: bool,
    /// None when the action no longer exists.
    pub schema: Option<&'a Result<ParamSchema, String>>,
    pub secret_names: &'a [String],
    pub timeout_seconds: Option<i32>,
    pub retry: Option<&'a Value>,
}

/// The scheduler's verdict on one execution.
pub struct Admission {
    /// `scheduled` or `failed`.
    pub status: &'static str,
    /// With defaults applied, secret ones masked.
    pub parameters: Value,
    pub secret_params: Option<Vec<u8>>,
    /// The failure (`error`, `failure_reason`) when `failed`.
    pub result: Option<Value>,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
}

/// Admits an execution: its runner must exist, its parameters (plain, defaults not yet
/// applied) must validate against the action's schema. Shared by the scheduler and the
/// rule engine's fast path, so both decide alike.
pub fn admit(ctx: &Context, terms: &ActionTerms<'_>, plain: Result<Value, String>) -> Admission {
    let default_timeout = ctx.config.worker.default_timeout_seconds.min(i32::MAX as u64) as i32;
    let fail = |reason: &str, error: String| Admission {
        status: "failed",
        parameters: Value::Null,
        secret_params: None,
        result: Some(
            json!({"exit_code": null, "output": null, "error": error, "failure_reason": reason, "truncated": false}),
        ),
        max_attempts: 1,
        timeout_seconds: default_timeout,
    };
    if NOT_YET_RUNNABLE.contains(&terms.runner_type) {
        return fail(
            "unsupported_runner",
            format!("runner_type {} is not available in this version of Attune", terms.runner_type),
        );
    }
    let Some(schema) = terms.schema else {
        return fail("action_missing", format!("action {} no longer exists", terms.action_ref));
    };
    if !terms.enabled {
        return fail("action_disabled", format!("action {} is disabled", terms.action_ref));
    }
    let schema = match schema {
        Ok(s) => s,
        Err(e) => return fail("invalid_parameters", format!("the action's parameter schema is invalid: {e}")),
    };
    let mut params = match plain {
        Ok(Value::Object(map)) => map,
        Ok(_) => return fail("invalid_parameters", "parameters must be a JSON object".into()),
        Err(e) => return fail("invalid_parameters", e),
    };
    schema.apply_defaults(&mut params);
    let params = Value::Object(params);
    if let Err(errors) = schema.validate(&params) {
        return fail("invalid_parameters", errors.join("; "));
    }
    let (masked, sealed) = seal_secrets(&ctx.keys.encryption_key, &params, terms.secret_names);
    let max_attempts = terms
        .retry
        .and_then(|retry| retry.get("max_attempts"))
        .and_then(Value::as_i64)
        .map_or(1, |n| n.clamp(1, i32::MAX as i64) as i32);
    Admission {
        status: "scheduled",
        parameters: masked,
        secret_params: sealed,
        result: None,
        max_attempts,
        timeout_seconds: terms.timeout_seconds.unwrap_or(default_timeout),
    }
}
