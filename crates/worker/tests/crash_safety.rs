//! Crash safety with real processes: no process of an action outlives its run, nor the
//! worker that runs it — `setsid` and double-forked descendants included — sandboxed
//! (bubblewrap, the default) and unsandboxed (`sandbox.mode = none`).
//!
//! The test finds the action's processes on the host by their command line: each is a
//! `sleep` of a length no other process has (a marker made of this test's pid). "Gone"
//! means no such process any more, or only its zombie.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attune_core::child::{containment, Containment, SandboxMode};
use attune_core::domain::RunnerType;
use attune_worker::runners::{run, Job};
use serde_json::{json, Map};

/// Set in the environment of the fake worker this file starts (see [`fake_worker`]): the
/// marker its action's sleepers carry.
const FAKE_WORKER_MARKER: &str = "ATTUNE_TEST_FAKE_WORKER_MARKER";
/// And its sandbox mode (`namespaces` or `none`).
const FAKE_WORKER_MODE: &str = "ATTUNE_TEST_FAKE_WORKER_MODE";
/// Set for the fake worker that starts actions without pause (see [`storming_worker`]).
const FAKE_WORKER_STORM: &str = "ATTUNE_TEST_FAKE_WORKER_STORM";

fn shell_job(command: String, mode: SandboxMode) -> Job {
    let mut sandbox = attune_core::Config::default().sandbox;
    sandbox.mode = mode;
    Job {
        execution_id: 1,
        tenant_id: 1,
        action_ref: "test.crash".into(),
        runner_type: RunnerType::Shell,
        parameters: json!({}),
        secret_names: Vec::new(),
        secrets: Map::new(),
        masker: Default::default(),
        attempt: 1,
        timeout: Duration::from_secs(600),
        entry_point: None,
        command: Some(command),
        code: None,
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
        sandbox,
    }
}

/// A marker no other process of the machine has: `3000.<tag><pid, 7 digits>`; the
/// sleepers add one digit.
fn marker(tag: &str) -> String {
    format!("3000.{tag}{:07}", std::process::id())
}

/// Unsandboxed, the guarantees need the PID namespace of `unshare`.
fn require_containment(mode: SandboxMode) {
    if mode == SandboxMode::None {
        if let Containment::ProcessGroup { reason } = containment() {
            panic!("actions cannot run in PID namespaces here, so they can outlive their worker: {reason}");
        }
    }
}

/// Host pids of the `sleep` processes whose length starts with `marker`.
fn sleepers(marker: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if argv.len() >= 2 && argv[0].ends_with("sleep") && argv[1].starts_with(marker) && !gone(pid) {
            found.push((pid, argv[1].clone()));
        }
    }
    found
}

/// No such process any more, or only its zombie.
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => status.lines().any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => true,
    }
}

/// Waits up to `limit` for `marker`'s sleepers to be `count`; returns them.
fn wait_for(marker: &str, count: usize, limit: Duration) -> Vec<(i32, String)> {
    let deadline = Instant::now() + limit;
    loop {
        let found = sleepers(marker);
        if found.len() == count || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Case 1: an action that started a `setsid` grandchild (out of its process group) and a
/// double-forked one, then exited: neither is left once the run is over.
async fn an_action_leaves_nothing_running_when_it_ends(mode: SandboxMode) {
    require_containment(mode);
    let m = marker(if mode == SandboxMode::None { "1" } else { "2" });
    let command = format!("setsid sleep {m}1 &\n(sleep {m}2 &)\nsleep 1.5\necho started");
    let running = tokio::spawn(async move { run(&shell_job(command, mode)).await });
    let seen = tokio::task::spawn_blocking({
        let m = m.clone();
        move || wait_for(&m, 2, Duration::from_secs(20))
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 2, "both sleepers ran: {seen:?}");
    let out = running.await.unwrap();
    assert!(out.succeeded, "{out:?}");
    assert_eq!(out.stdout, "started\n");
    assert_eq!(wait_for(&m, 0, Duration::from_secs(1)), Vec::new(), "processes outlived their action");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_action_leaves_nothing_running_when_it_ends() {
    an_action_leaves_nothing_running_when_it_ends(SandboxMode::Namespaces).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsandboxed_action_leaves_nothing_running_when_it_ends() {
    an_action_leaves_nothing_running_when_it_ends(SandboxMode::None).await;
}

/// Not a test of its own: the fake worker that [`the_death_of_the_worker_ends_its_actions`]
/// starts (this same test binary, run with [`FAKE_WORKER_MARKER`] set). It runs an action
/// that starts a `setsid` sleeper, a double-forked sleeper and a plain background sleeper,
/// sleeps itself, and blocks until it is killed with its worker.
#[test]
fn fake_worker() {
    let Ok(m) = std::env::var(FAKE_WORKER_MARKER) else { return };
    if std::env::var_os(FAKE_WORKER_STORM).is_some() {
        return storming_worker(&m);
    }
    let mode = match std::env::var(FAKE_WORKER_MODE).as_deref() {
        Ok("none") => SandboxMode::None,
        _ => SandboxMode::Namespaces,
    };
    let command = format!("setsid sleep {m}1 &\n(sleep {m}2 &)\nsleep {m}3 &\nsleep {m}4");
    eprintln!("fake worker {}: {mode:?}, {:?}", std::process::id(), containment());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let out = runtime.block_on(async { run(&shell_job(command, mode)).await });
    panic!("the action ended while its worker lived: {out:?}");
}

/// Case 2: the worker is SIGKILLed mid-action: every process of the action dies with it.
fn the_death_of_the_worker_ends_its_actions(mode: SandboxMode) {
    require_containment(mode);
    let m = marker(if mode == SandboxMode::None { "3" } else { "4" });
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
    let mut worker = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fake_worker", "--nocapture", "--test-threads=1"])
        .env(FAKE_WORKER_MARKER, &m)
        .env(FAKE_WORKER_MODE, if mode == SandboxMode::None { "none" } else { "namespaces" })
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default();

    // All four processes of the action are up.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = sleepers(&m);
        if found.len() == 4 {
            break;
        }
        if let Some(status) = worker.try_wait().unwrap() {
            panic!("the fake worker ended early ({status}): {}", log());
        }
        assert!(Instant::now() < deadline, "the action did not start its processes: {found:?}; {}", log());
        std::thread::sleep(Duration::from_millis(10));
    }

    worker.kill().unwrap(); // SIGKILL: no cleanup code of the worker runs
    worker.wait().unwrap();
    assert_eq!(wait_for(&m, 0, Duration::from_secs(1)), Vec::new(), "processes outlived their worker");
    // Its scratch folder is left to the next start of a program to sweep away.
    attune_core::child::sweep_leftovers();
}

#[test]
fn the_death_of_the_worker_ends_its_sandboxed_actions() {
    the_death_of_the_worker_ends_its_actions(SandboxMode::Namespaces);
}

#[test]
fn the_death_of_the_worker_ends_its_unsandboxed_actions() {
    the_death_of_the_worker_ends_its_actions(SandboxMode::None);
}

/// The fake worker of [`the_death_of_the_worker_while_sandboxes_start_leaves_nothing`]:
/// starts a sandboxed action every few milliseconds (each a shell that carries the
/// marker in its script and sleeps), so that some are always being built.
fn storming_worker(m: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        for n in 0..200 {
            let command = format!(": {m}; sleep 60.{n}");
            tokio::spawn(async move { run(&shell_job(command, SandboxMode::Namespaces)).await });
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        std::future::pending::<()>().await;
    });
}

/// Host pids of the processes whose command line contains `marker` (`unshare`, `bwrap`
/// and the shells of the actions carry it).
fn carrying(marker: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !gone(pid) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Case 3: the worker is SIGKILLed while it starts sandboxes, again and again, at random
/// moments — some while `bwrap` is still building a sandbox, before the sandbox's own
/// PID 1 has a death signal: nothing of any of them is left.
#[test]
fn the_death_of_the_worker_while_sandboxes_start_leaves_nothing() {
    let m = marker("5");
    let dir = tempfile::tempdir().unwrap();
    for round in 0..6u64 {
        let log = std::fs::File::create(dir.path().join("worker.log")).unwrap();
        let mut worker = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "fake_worker", "--nocapture", "--test-threads=1"])
            .env(FAKE_WORKER_MARKER, &m)
            .env(FAKE_WORKER_STORM, "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        // Until sandboxes are being started, then a little more, different each round.
        let deadline = Instant::now() + Duration::from_secs(20);
        while carrying(&m).is_empty() {
            assert!(Instant::now() < deadline, "the storming worker started nothing");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(20 + round * 61 % 300));
        worker.kill().unwrap();
        worker.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut left = carrying(&m);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            left = carrying(&m);
        }
        assert_eq!(left, Vec::new(), "round {round}: processes outlived their worker");
    }
    attune_core::child::sweep_leftovers();
}
