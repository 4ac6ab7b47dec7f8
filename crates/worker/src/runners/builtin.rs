//! The core pack's native actions, run in-process: no child process for a no-op.

use std::time::Duration;

use serde_json::{json, Value};

use super::{Job, Outcome};

pub async fn run(job: &Job) -> Outcome {
    let ok = |stdout: String, output: Option<Value>| Outcome {
        succeeded: true,
        exit_code: Some(0),
        stdout,
        stderr: String::new(),
        truncated: false,
        output,
        error: None,
        failure_reason: None,
    };
    match job.action_ref.as_str() {
        "core.noop" => ok(String::new(), None),
        // Prints the message and returns it as output: `{"message": <message>}`.
        "core.echo" => {
            let message = match job.parameters.get("message") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            ok(format!("{message}\n"), Some(json!({ "message": message })))
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
                _ = tokio::time::sleep(wanted) => ok(String::new(), None),
                _ = job.cancel.cancelled() => Outcome::canceled(),
            }
        }
        other => Outcome::failed(format!("no builtin action named {other}")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runners::tests::job;

    #[tokio::test]
    async fn echo_prints_the_message_and_returns_it_as_output() {
        let out = run(&job("core.echo", json!({"message": "hi"}))).await;
        assert!(out.succeeded);
        assert_eq!(out.stdout, "hi\n");
        assert_eq!(out.output, Some(json!({"message": "hi"})));
        assert_eq!(out.result_json()["output"], json!({"message": "hi"}));
        let empty = run(&job("core.echo", json!({}))).await;
        assert_eq!((empty.stdout.as_str(), empty.output), ("\n", Some(json!({"message": ""}))));
    }

    #[tokio::test]
    async fn noop_has_no_output() {
        let out = run(&job("core.noop", json!({}))).await;
        assert!(out.succeeded);
        assert_eq!(out.output, None);
    }
}
