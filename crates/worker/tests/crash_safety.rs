//! Crash safety with real processes: no process of an action outlives its run, nor the
//! worker that runs it — `setsid` and double-forked descendants included.
//!
//! The actions record the host pids of their processes (`/proc/self/stat` read by the
//! shell itself: `$$` would be a namespace-local number) in a file; "gone" means no
//! `/proc/<pid>` or a zombie (`State: Z`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attune_core::child::{containment, Containment};
use attune_core::domain::RunnerType;
use attune_worker::runners::{run, Job};
use serde_json::{json, Map};

/// Set in the environment of the fake worker this file starts (see [`fake_worker`]): the
/// directory its action records pids in.
const FAKE_WORKER_DIR: &str = "ATTUNE_TEST_FAKE_WORKER_DIR";

fn shell_job(command: String) -> Job {
    Job {
        execution_id: 1,
        tenant_id: 1,
        action_ref: "test.crash".into(),
        runner_type: RunnerType::Shell,
        parameters: json!({}),
        secret_names: Vec::new(),
        secrets: Map::new(),
        attempt: 1,
        timeout: Duration::from_secs(600),
        entry_point: None,
        command: Some(command),
        code: None,
        pack_dir: None,
        api_url: "http://localhost".into(),
        api_token: String::new(),
        max_output_bytes: 64 * 1024,
        unrunnable: None,
        cancel: Default::default(),
        started: None,
    }
}

/// A command whose process appends its host pid to `file`, then becomes `sleep <seconds>`
/// (the same process: a pid in the file is a sleeper).
fn recorder(file: &Path, seconds: &str) -> String {
    format!(r#"sh -c 'read -r pid _ < /proc/self/stat; echo $pid >> {}; exec sleep {seconds}'"#, file.display())
}

fn require_pid_namespaces() {
    if let Containment::ProcessGroup { reason } = containment() {
        panic!("actions cannot run in PID namespaces here, so they can outlive their worker: {reason}");
    }
}

fn pids_in(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file).unwrap_or_default().lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// No such process any more, or only its zombie.
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status.lines().any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => true,
    }
}

/// Waits up to `limit` for every pid to be gone; returns those still there.
fn survivors(pids: &[i32], limit: Duration) -> Vec<(i32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|p| !gone(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left
                .into_iter()
                .map(|p| {
                    let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                    (p, String::from_utf8_lossy(&cmdline).replace('\0', " "))
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// 1. An action that started a `setsid` grandchild (out of its process group) and a
/// double-forked one, then exited: neither is left once the run is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_leaves_nothing_running_when_it_ends() {
    require_pid_namespaces();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let command = format!(
        "setsid {setsid} &\n({double} &)\n\
         while [ \"$(cat {f} 2>/dev/null | wc -l)\" -lt 2 ]; do sleep 0.01; done\n\
         for pid in $(cat {f}); do while ! grep -q sleep /proc/$pid/cmdline; do sleep 0.01; done; done\n\
         echo started",
        setsid = recorder(&file, "300.101"),
        double = recorder(&file, "300.102"),
        f = file.display(),
    );
    let out = run(&shell_job(command)).await;
    assert!(out.succeeded, "{out:?}");
    assert_eq!(out.stdout, "started\n");
    let pids = pids_in(&file);
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert_eq!(survivors(&pids, Duration::from_secs(1)), Vec::new(), "processes outlived their action");
}

/// Not a test of its own: the fake worker that [`the_death_of_the_worker_ends_its_actions`]
/// starts (this same test binary, run with [`FAKE_WORKER_DIR`] set). It runs an action
/// that starts a `setsid` sleeper, a double-forked sleeper and a plain background sleeper,
/// records their pids and its own, and blocks until it is killed with its worker.
#[test]
fn fake_worker() {
    let Some(dir) = std::env::var_os(FAKE_WORKER_DIR) else { return };
    let file = Path::new(&dir).join("pids");
    let command = format!(
        "setsid {setsid} &\n({double} &)\n{plain} &\n\
         read -r pid _ < /proc/self/stat; echo $pid >> {f}\n\
         sleep 300.204",
        setsid = recorder(&file, "300.201"),
        double = recorder(&file, "300.202"),
        plain = recorder(&file, "300.203"),
        f = file.display(),
    );
    eprintln!("fake worker {}: {:?}", std::process::id(), containment());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let out = runtime.block_on(async { run(&shell_job(command)).await });
    panic!("the action ended while its worker lived: {out:?}");
}

/// 2. The worker is SIGKILLed mid-action: every process of the action dies with it.
#[test]
fn the_death_of_the_worker_ends_its_actions() {
    require_pid_namespaces();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pids");
    let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
    let mut worker = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fake_worker", "--nocapture", "--test-threads=1"])
        .env(FAKE_WORKER_DIR, dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default();

    // All four processes of the action are up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let pids = loop {
        let pids = pids_in(&file);
        if pids.len() == 4 && pids.iter().all(|p| !gone(*p)) {
            break pids;
        }
        if let Some(status) = worker.try_wait().unwrap() {
            panic!("the fake worker ended early ({status}): {}", log());
        }
        assert!(Instant::now() < deadline, "the action did not start its processes: {pids:?}; {}", log());
        std::thread::sleep(Duration::from_millis(10));
    };

    worker.kill().unwrap(); // SIGKILL: no cleanup code of the worker runs
    worker.wait().unwrap();
    assert_eq!(survivors(&pids, Duration::from_secs(1)), Vec::new(), "processes outlived their worker");
}
