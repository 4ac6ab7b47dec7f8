//! The scheduler: validates requested executions and hands them to the workers.
//!
//! Each round claims a batch of `requested` executions (`FOR UPDATE SKIP LOCKED`), applies
//! each action's parameter defaults and validates against its schema. Invalid parameters
//! end the execution `failed` at once with a message naming the parameter — it never
//! reaches a worker. Valid ones become `scheduled`, and one NOTIFY per batch wakes the
//! workers.

use std::collections::HashMap;
use std::time::Duration;

use attune_core::audit::{self, Actor, Entry};
use attune_core::domain::ParamSchema;
use attune_core::execution::{seal_secrets, unseal_parameters};
use attune_core::wakeup::Wakeup;
use attune_core::{Context, Shutdown};
use serde_json::{json, Value};

pub const BATCH: i64 = 1000;
/// Runner types no worker of this version runs yet: their executions fail at once with a
/// clear reason instead of waiting forever in `scheduled`.
const NOT_YET_RUNNABLE: &[&str] = &["node", "http", "container", "workflow", "inquiry"];
const POLL: Duration = Duration::from_secs(1);

#[derive(sqlx::FromRow)]
struct Requested {
    id: i64,
    tenant_id: i64,
    action_id: Option<i64>,
    action_ref: String,
    runner_type: String,
    parameters: Value,
    secret_params: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct ActionInfo {
    id: i64,
    param_schema: Value,
    secret_params: Vec<String>,
    timeout_seconds: Option<i32>,
    retry: Option<Value>,
}

/// The decision for one execution.
struct Decision {
    id: i64,
    tenant_id: i64,
    action_ref: String,
    status: &'static str,
    parameters: Value,
    secret_params: Option<Vec<u8>>,
    result: Option<Value>,
    max_attempts: i32,
    timeout_seconds: i32,
}

pub struct Scheduler {
    ctx: Context,
}

impl Scheduler {
    pub fn new(ctx: Context) -> Scheduler {
        Scheduler { ctx }
    }

    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
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
        let action_ids: Vec<i64> = requested.iter().filter_map(|r| r.action_id).collect();
        let actions: HashMap<i64, ActionInfo> = sqlx::query_as::<_, ActionInfo>(
            "SELECT id, param_schema, secret_params, timeout_seconds, retry FROM attune.action WHERE id = ANY($1)",
        )
        .bind(&action_ids)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|a| (a.id, a))
        .collect();

        let decisions: Vec<Decision> = requested.into_iter().map(|r| self.decide(r, &actions)).collect();
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
        let entries: Vec<Entry> = decisions
            .iter()
            .map(|d| Entry {
                tenant_id: Some(d.tenant_id),
                actor: Actor::service("executor"),
                action: format!("execution.{}", d.status),
                entity_type: "execution".into(),
                entity_id: d.id.to_string(),
                data: match &d.result {
                    Some(result) => json!({"action": d.action_ref, "error": result["error"]}),
                    None => json!({"action": d.action_ref}),
                },
            })
            .collect();
        audit::record(&mut tx, &entries).await?;
        if decisions.iter().any(|d| d.status == "scheduled") {
            sqlx::query("SELECT pg_notify('attune_scheduled', '')").execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(decisions.len())
    }

    fn decide(&self, r: Requested, actions: &HashMap<i64, ActionInfo>) -> Decision {
        let default_timeout = self.ctx.config.worker.default_timeout_seconds.min(i32::MAX as u64) as i32;
        let fail = |r: &Requested, reason: &str, error: String| Decision {
            id: r.id,
            tenant_id: r.tenant_id,
            action_ref: r.action_ref.clone(),
            status: "failed",
            parameters: r.parameters.clone(),
            secret_params: r.secret_params.clone(),
            result: Some(
                json!({"exit_code": null, "output": null, "error": error, "failure_reason": reason, "truncated": false}),
            ),
            max_attempts: 1,
            timeout_seconds: default_timeout,
        };
        if NOT_YET_RUNNABLE.contains(&r.runner_type.as_str()) {
            let error = format!("runner_type {} is not available in this version of Attune", r.runner_type);
            return fail(&r, "unsupported_runner", error);
        }
        let Some(action) = r.action_id.and_then(|id| actions.get(&id)) else {
            let error = format!("action {} no longer exists", r.action_ref);
            return fail(&r, "action_missing", error);
        };
        let key = &self.ctx.keys.encryption_key;
        let plain = match unseal_parameters(key, &r.parameters, r.secret_params.as_deref()) {
            Ok(p) => p,
            Err(e) => return fail(&r, "invalid_parameters", e),
        };
        let Value::Object(mut params) = plain else {
            return fail(&r, "invalid_parameters", "parameters must be a JSON object".into());
        };
        let schema = match ParamSchema::parse(&action.param_schema) {
            Ok(s) => s,
            Err(e) => return fail(&r, "invalid_parameters", format!("the action's parameter schema is invalid: {e}")),
        };
        schema.apply_defaults(&mut params);
        let params = Value::Object(params);
        if let Err(errors) = schema.validate(&params) {
            return fail(&r, "invalid_parameters", errors.join("; "));
        }
        let (masked, sealed) = seal_secrets(key, &params, &action.secret_params);
        let max_attempts = action
            .retry
            .as_ref()
            .and_then(|retry| retry.get("max_attempts"))
            .and_then(Value::as_i64)
            .map_or(1, |n| n.clamp(1, i32::MAX as i64) as i32);
        Decision {
            id: r.id,
            tenant_id: r.tenant_id,
            action_ref: r.action_ref,
            status: "scheduled",
            parameters: masked,
            secret_params: sealed,
            result: None,
            max_attempts,
            timeout_seconds: action.timeout_seconds.unwrap_or(default_timeout),
        }
    }
}
