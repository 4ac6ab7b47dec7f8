//! The core pack's native actions, run in-process: no child process for a no-op.

use std::time::Duration;

use serde_json::Value;

use super::{Job, Outcome};

pub async fn run(job: &Job) -> Outcome {
    let ok = |stdout: String| Outcome {
        succeeded: true,
        exit_code: Some(0),
        stdout,
        stderr: String::new(),
        truncated: false,
        output: None,
        error: None,
        failure_reason: None,
    };
    match job.action_ref.as_str() {
        "core.noop" => ok(String::new()),
        "core.echo" => {
            let message = match job.parameters.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            ok(format!("{message}\n"))
        }
        "core.sleep" => {
            let seconds = job.parameters.get("seconds").and_then(Value::as_f64).unwrap_or(1.0).max(0.0);
            let wanted = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
            if wanted > job.timeout {
                tokio::time::sleep(job.timeout).await;
                let mut out = Outcome::failed(format!("timed out after {} s", job.timeout.as_secs()));
                out.failure_reason = Some("timeout");
                return out;
            }
            tokio::select! {
                _ = tokio::time::sleep(wanted) => ok(String::new()),
                _ = job.cancel.cancelled() => Outcome::canceled(),
            }
        }
        other => Outcome::failed(format!("no builtin action named {other}")),
    }
}
