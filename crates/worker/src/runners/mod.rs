//! How an action runs. Every runner turns a [`Job`] into an [`Outcome`].

pub mod builtin;
pub mod container;
pub mod http;
pub mod process;
pub mod warm;

use std::path::PathBuf;
use std::time::Duration;

use attune_core::domain::{ExecutionStatus, RunnerType};
use serde_json::{json, Map, Value};

use crate::masking::Masker;

/// Everything a runner needs about one execution attempt.
#[derive(Debug, Clone)]
pub struct Job {
    pub execution_id: i64,
    pub tenant_id: i64,
    pub action_ref: String,
    pub runner_type: RunnerType,
    /// Every parameter, secret ones in plaintext (they go to stdin only).
    pub parameters: Value,
    /// Names of the secret parameters (kept out of the environment): the action's secret
    /// parameters and every parameter the execution sealed.
    pub secret_names: Vec<String>,
    /// The action's declared datastore secrets, decrypted.
    pub secrets: Map<String, Value>,
    /// The secret values to mask out of the action's output: every sealed parameter's and
    /// every declared datastore secret's.
    pub masker: Masker,
    pub attempt: i32,
    pub timeout: Duration,
    pub entry_point: Option<String>,
    pub command: Option<String>,
    pub code: Option<String>,
    /// The pack's directory, when it was loaded from one.
    pub pack_dir: Option<PathBuf>,
    /// The pack's ref and version (runtime environments are kept per pack version).
    pub pack_ref: Option<String>,
    pub pack_version: Option<String>,
    /// Where the packs' runtime environments are kept: `<data_dir>/envs` ([`crate::envs`]).
    pub envs_dir: PathBuf,
    /// The action's `http` block (runner `http`): method, url, headers, body, ...
    pub http: Option<Value>,
    /// The action's `container` block (runner `container`): image, ...
    pub container: Option<Value>,
    pub api_url: String,
    /// `context.api_token`: the executor role in the execution's tenant, expiring with it.
    pub api_token: String,
    pub max_output_bytes: usize,
    /// Set when the job cannot run at all (its secrets could not be read): the runner
    /// reports this failure instead of running the action with missing values.
    pub unrunnable: Option<String>,
    /// Cancelled when someone asks for the execution to be canceled.
    pub cancel: tokio_util::sync::CancellationToken,
    /// Whether the action's sandbox has network (the action's `network`).
    pub network: bool,
    /// How the action is sandboxed: the worker's `sandbox` settings (mode, user, bound
    /// folders, limits).
    pub sandbox: attune_core::child::SandboxConfig,
    /// Where a runner that starts a process reports its pid (the attempt's row keeps it).
    pub started: Option<crate::attempts::StartedTx>,
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

    /// The status this attempt ends with: `succeeded`, `canceled` or `failed`.
    pub fn status(&self) -> ExecutionStatus {
        if self.succeeded {
            ExecutionStatus::Succeeded
        } else if self.failure_reason == Some("canceled") {
            ExecutionStatus::Canceled
        } else {
            ExecutionStatus::Failed
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

    /// The same outcome with the secret values of `masker` masked in everything it shows.
    pub fn masked(mut self, masker: &Masker) -> Outcome {
        if masker.is_empty() {
            return self;
        }
        self.stdout = masker.mask_str(&self.stdout);
        self.stderr = masker.mask_str(&self.stderr);
        self.error = self.error.map(|e| masker.mask_str(&e));
        self.output = self.output.map(|o| masker.mask_json(o));
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
        match job.runner_type {
            // A builtin's output is made whole, not read from a pipe: masked at once.
            RunnerType::Builtin => builtin::run(job).await.masked(&job.masker),
            // So is an http call's: the answer is read whole (up to the output bound).
            RunnerType::Http => http::run(job).await.masked(&job.masker),
            RunnerType::Shell | RunnerType::Python | RunnerType::Node => process::run(job).await,
            // Captured as a process's output is: masked as it is read.
            RunnerType::Container => container::run(job).await,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A builtin job of `action_ref` with `parameters`.
    pub(crate) fn job(action_ref: &str, parameters: Value) -> Job {
        Job {
            execution_id: 1,
            tenant_id: 1,
            action_ref: action_ref.to_string(),
            runner_type: RunnerType::Builtin,
            parameters,
            secret_names: Vec::new(),
            secrets: Map::new(),
            masker: Masker::default(),
            attempt: 1,
            timeout: Duration::from_secs(10),
            entry_point: None,
            command: None,
            code: None,
            pack_dir: None,
            pack_ref: None,
            pack_version: None,
            envs_dir: std::env::temp_dir().join("attune-test-envs"),
            http: None,
            container: None,
            api_url: "http://localhost".into(),
            api_token: String::new(),
            max_output_bytes: 1024,
            unrunnable: None,
            cancel: Default::default(),
            started: None,
            network: true,
            sandbox: attune_core::Config::default().sandbox,
        }
    }

    #[test]
    fn outcome_status() {
        let ok = Outcome { succeeded: true, exit_code: Some(0), ..Outcome::failed("") };
        assert_eq!(ok.status(), ExecutionStatus::Succeeded);
        assert_eq!(Outcome::failed("x").status(), ExecutionStatus::Failed);
        assert_eq!(Outcome::canceled().status(), ExecutionStatus::Canceled);
    }

    #[tokio::test]
    async fn dispatch_by_runner_type() {
        // Every type a worker runs has its runner; the executor's own are refused.
        let mut workflow = job("p.x", json!({}));
        workflow.runner_type = RunnerType::Workflow;
        let out = run(&workflow).await;
        assert_eq!(out.error.as_deref(), Some("this worker cannot run runner_type workflow"));
        assert!(run(&job("core.noop", json!({}))).await.succeeded);
    }

    #[tokio::test]
    async fn a_builtin_outcome_is_masked() {
        let mut echo = job("core.echo", json!({"message": "say s3cret-value"}));
        echo.masker = Masker::new(&[json!("s3cret-value")]).unwrap();
        let out = run(&echo).await;
        assert_eq!(out.stdout, "say ********\n");
        assert_eq!(out.output, Some(json!({"message": "say ********"})));
    }
}
