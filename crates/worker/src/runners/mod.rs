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
    pub max_output_bytes: usize,
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
        } else {
            "failed"
        }
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

/// Runs `job` with the runner its type names.
pub async fn run(job: &Job) -> Outcome {
    match job.runner_type.as_str() {
        "builtin" => builtin::run(job).await,
        "shell" | "python" => process::run(job).await,
        other => Outcome::failed(format!("this worker cannot run runner_type {other}")),
    }
}
