//! Admission: the one rule for whether an execution may run, shared by manual runs (the
//! API answers 4xx at once), the scheduler and the rule engine (which insert executions
//! already admitted).
//!
//! An execution is admitted when its runner type is one this version runs (workers, or
//! the executor for workflows), its
//! action exists and is enabled, and its parameters — with the schema's defaults applied
//! — validate against the action's schema. Admitted parameters come back with secret ones
//! sealed; a refusal names the reason (`failure_reason`) and the bad input (`error`).

use serde_json::{json, Value};

use crate::domain::{ExecutionStatus, ParamSchema, RunnerType};
use crate::execution::seal_secrets;
use crate::Context;

/// What admission needs to know of an execution's action.
pub struct ActionTerms<'a> {
    pub action_ref: &'a str,
    pub runner_type: RunnerType,
    pub enabled: bool,
    /// None when the action no longer exists.
    pub schema: Option<&'a Result<ParamSchema, String>>,
    pub secret_names: &'a [String],
    pub timeout_seconds: Option<i32>,
    pub retry: Option<&'a Value>,
}

/// The verdict on one execution.
pub struct Admission {
    /// `scheduled` or `failed`.
    pub status: ExecutionStatus,
    /// Why it was refused (`unsupported_runner`, `action_missing`, `action_disabled`,
    /// `invalid_parameters`), when `failed`.
    pub failure_reason: Option<&'static str>,
    /// With defaults applied, secret ones masked.
    pub parameters: Value,
    pub secret_params: Option<Vec<u8>>,
    /// The failure (`error`, `failure_reason`) when `failed`.
    pub result: Option<Value>,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
}

/// Admits an execution: its runner must be available, its action enabled, its parameters
/// (plain, defaults not yet applied) valid against the action's schema.
pub fn admit(ctx: &Context, terms: &ActionTerms<'_>, plain: Result<Value, String>) -> Admission {
    let default_timeout = ctx.config.worker.default_timeout_seconds.min(i32::MAX as u64) as i32;
    let fail = |reason: &'static str, error: String| {
        crate::metrics::admission_failed(reason, terms.runner_type.as_str());
        Admission {
            status: ExecutionStatus::Failed,
            failure_reason: Some(reason),
            parameters: Value::Null,
            secret_params: None,
            result: Some(
                json!({"exit_code": null, "output": null, "error": error, "failure_reason": reason, "truncated": false}),
            ),
            max_attempts: 1,
            timeout_seconds: default_timeout,
        }
    };
    if let Some(why) = terms.runner_type.unavailable_reason() {
        return fail("unsupported_runner", why);
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
    let (masked, sealed) = seal_secrets(&ctx.keys.encryption, &params, terms.secret_names);
    let max_attempts = terms
        .retry
        .and_then(|retry| retry.get("max_attempts"))
        .and_then(Value::as_i64)
        .map_or(1, |n| n.clamp(1, i32::MAX as i64) as i32);
    Admission {
        status: ExecutionStatus::Scheduled,
        failure_reason: None,
        parameters: masked,
        secret_params: sealed,
        result: None,
        max_attempts,
        timeout_seconds: terms.timeout_seconds.unwrap_or(default_timeout),
    }
}

/// Admits parameters an engine rendered itself (a rule's, a workflow task's): as
/// [`admit`], and a refused execution keeps what was rendered — its secrets sealed — next
/// to the reason, so the failure shows what was asked for.
pub fn admit_rendered(ctx: &Context, terms: &ActionTerms<'_>, rendered: Value) -> Admission {
    let mut admission = admit(ctx, terms, Ok(rendered.clone()));
    if admission.status == ExecutionStatus::Failed {
        let (masked, sealed) = seal_secrets(&ctx.keys.encryption, &rendered, terms.secret_names);
        admission.parameters = masked;
        admission.secret_params = sealed;
    }
    admission
}

impl Admission {
    /// The refusal's message (`result.error`), when refused.
    pub fn error(&self) -> Option<&str> {
        self.result.as_ref()?.get("error")?.as_str()
    }
}
