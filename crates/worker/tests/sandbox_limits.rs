//! The sandbox's resource limits with real processes: an action that exceeds one fails,
//! and its `error` names the limit and the setting (`sandbox.limits.*`).

use std::time::Duration;

use attune_core::domain::RunnerType;
use attune_worker::runners::{run, Job, Outcome};
use serde_json::{json, Map};

fn job(runner_type: RunnerType, command: Option<&str>, code: Option<&str>) -> Job {
    Job {
        execution_id: 1,
        tenant_id: 1,
        action_ref: "test.limits".into(),
        runner_type,
        parameters: json!({}),
        secret_names: Vec::new(),
        secrets: Map::new(),
        masker: Default::default(),
        attempt: 1,
        timeout: Duration::from_secs(60),
        entry_point: None,
        command: command.map(str::to_string),
        code: code.map(str::to_string),
        pack_dir: None,
        pack_ref: None,
        pack_version: None,
        envs_dir: std::env::temp_dir().join("attune-test-envs"),
        http: None,
        container: None,
        api_url: "http://localhost".into(),
        api_token: String::new(),
        max_output_bytes: 64 * 1024,
        unrunnable: None,
        cancel: Default::default(),
        started: None,
        network: true,
        sandbox: attune_core::Config::default().sandbox,
    }
}

fn failed_naming(out: &Outcome, limit: &str) {
    assert!(!out.succeeded, "{out:?}");
    let error = out.error.as_deref().unwrap_or_default();
    assert!(error.contains(limit), "expected {limit:?} in the error: {out:?}");
    assert_eq!(out.failure_reason, Some("resource_limit"), "{out:?}");
}

#[tokio::test]
async fn cpu_time() {
    let mut job = job(RunnerType::Shell, Some("while :; do :; done"), None);
    job.sandbox.limits.cpu_seconds = 1;
    let out = run(&job).await;
    failed_naming(&out, "exceeded its CPU time limit (1 s, sandbox.limits.cpu_seconds)");
    assert_eq!(out.exit_code, Some(128 + 24), "SIGXCPU: {out:?}");
}

#[tokio::test]
async fn open_files() {
    let code = "def run(params):\n    files = [open('/dev/null') for _ in range(100)]\n    return len(files)\n";
    let mut job = job(RunnerType::Python, None, Some(code));
    job.sandbox.limits.open_files = 40;
    failed_naming(&run(&job).await, "exceeded its open files limit (40, sandbox.limits.open_files)");
}

#[tokio::test]
async fn memory() {
    let code = "def run(params):\n    return len(bytearray(512 * 1024 ** 2))\n";
    let mut job = job(RunnerType::Python, None, Some(code));
    job.sandbox.limits.memory_mb = 200;
    let out = run(&job).await;
    failed_naming(&out, "exceeded its memory limit (200 MiB, sandbox.limits.memory_mb)");
    // The same with room enough.
    job.sandbox.limits.memory_mb = 1024;
    assert!(run(&job).await.succeeded);
}

#[tokio::test]
async fn processes_are_counted_per_sandbox() {
    // Two actions at once, each under a limit of 12 processes, each starting 8: were the
    // limit counted for the user across sandboxes (both run as the same user), the
    // second would fail.
    let command = "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo ok";
    let mut a = job(RunnerType::Shell, Some(command), None);
    a.sandbox.limits.processes = 12;
    let b = a.clone();
    let (a, b) = tokio::join!(run(&a), run(&b));
    assert!(a.succeeded && b.succeeded, "{a:?}\n{b:?}");

    let mut bomb = job(RunnerType::Shell, Some("for i in $(seq 30); do sleep 5 & done; wait"), None);
    bomb.sandbox.limits.processes = 12;
    failed_naming(&run(&bomb).await, "exceeded its process limit (12, sandbox.limits.processes)");
}
