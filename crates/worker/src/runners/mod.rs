//! How an action runs. Every runner turns a [`Job`] into an [`Outcome`].

pub mod builtin;
pub mod process;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// Everything a runner needs about one execution attempt.
#[derive(Debug, Clone)]
pub struct Job {
    pub execution_id: i64,
    pub tenant_id: i64,
    pub action_ref: String,
    pub runner_type: String,
    /// Every parameter, secret ones in plaintext (they go to stdin only).
    pub parameters: Value,
    /// Names of the secret parameters (kept out of the environment).
    pub secret_names: Vec<String>,
    /// The action's declared datastore secrets, decrypted.
    pub secrets: Map<String, Value>,
    pub attempt: i32,
    pub timeout: Duration,
    pub entry_point: Option<String>,
    pub command: Option<String>,
    pub code: Option<String>,
    /// The pack's directory, when it was loaded from one.
    pub pack_dir: Option<PathBuf>,
    pub api_url: String,
    /// `context.api_token`: the executor role in the execution's tenant, expiring with it.
    pub api_token: String,
    pub max_output_bytes: usize,
    /// Set when the job cannot run at all (its secrets could not be read): the runner
    /// reports this failure instead of running the action with missing values.
    pub unrunnable: Option<String>,
    /// Cancelled when someone asks for the execution to be canceled.
    pub cancel: tokio_util::sync::CancellationToken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub succeeded: bool,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub output: Option<Value>,
    pub error: Option<String>,
    /// `timeout`, `worker_lost`, ... when the failure was not the action's own exit.
    pub failure_reason: Option<&'static str>,
}

impl Outcome {
    pub fn failed(error: impl Into<String>) -> Outcome {
        Outcome {
            succeeded: false,
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            output: None,
            error: Some(error.into()),
            failure_reason: None,
        }
    }

    pub fn status(&self) -> &'static str {
        if self.succeeded {
            "succeeded"
        } else if self.failure_reason == Some("canceled") {
            "canceled"
        } else {
            "failed"
        }
    }

    /// Ended by a cancel request.
    pub fn canceled() -> Outcome {
        let mut out = Outcome::failed("canceled on request");
        out.failure_reason = Some("canceled");
        out
    }

    /// The same outcome with every NUL character replaced (U+FFFD), so it can be stored.
    pub fn storable(mut self) -> Outcome {
        if self.stdout.contains('\0') {
            self.stdout = without_nul(&self.stdout);
        }
        if self.stderr.contains('\0') {
            self.stderr = without_nul(&self.stderr);
        }
        self.error = self.error.map(|e| without_nul(&e));
        self.output = self.output.map(json_without_nul);
        self
    }

    /// What `execution.result` keeps (stdout/stderr live in `execution_output`).
    pub fn result_json(&self) -> Value {
        let mut result = json!({
            "exit_code": self.exit_code,
            "output": self.output,
            "error": self.error,
            "truncated": self.truncated,
        });
        if let Some(reason) = self.failure_reason {
            result["failure_reason"] = json!(reason);
        }
        result
    }
}

/// Runs `job` with the runner its type names. A panic in a runner becomes a failed
/// outcome: the execution is never left `running` by a bug.
pub async fn run(job: &Job) -> Outcome {
    use futures::FutureExt;
    if let Some(reason) = &job.unrunnable {
        return Outcome::failed(reason.clone());
    }
    let run = async {
        match job.runner_type.as_str() {
            "builtin" => builtin::run(job).await,
            "shell" | "python" => process::run(job).await,
            other => Outcome::failed(format!("this worker cannot run runner_type {other}")),
        }
    };
    match std::panic::AssertUnwindSafe(run).catch_unwind().await {
        Ok(outcome) => outcome.storable(),
        Err(_) => Outcome::failed("the worker failed while running this action (a bug: see the worker log)"),
    }
}

/// PostgreSQL's text and jsonb cannot hold NUL characters; an action may print them.
fn without_nul(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn json_without_nul(v: Value) -> Value {
    match v {
        Value::String(s) if s.contains('\0') => Value::String(without_nul(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(json_without_nul).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (without_nul(&k), json_without_nul(v))).collect())
        }
        other => other,
    }
}
