//! `attune up` as a user runs it: a real child process on a private cluster in a temp
//! data dir, reached over HTTP, stopped with SIGTERM.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct Running {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

fn capture(mut stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let buf = Arc::new(Mutex::new(String::new()));
    let out = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stream.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    buf
}

fn attune(data_dir: &Path, port: u16, args: &[&str], extra_env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attune"));
    cmd.args(args)
        .env_remove("ATTUNE_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("ATTUNE_CONFIG")
        .env_remove("ATTUNE_ADMIN_PASSWORD")
        .env("ATTUNE_DATA_DIR", data_dir)
        .env("ATTUNE_API_PORT", port.to_string())
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the attune binary starts");
    let stdout = capture(child.stdout.take().unwrap());
    let stderr = capture(child.stderr.take().unwrap());
    Running { child, stdout, stderr }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `/ready` until 200; returns how long it took.
fn wait_ready(run: &mut Running, port: u16, limit: Duration) -> Duration {
    let started = Instant::now();
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    loop {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/ready")).send() {
            if r.status() == 200 {
                return started.elapsed();
            }
        }
        if let Some(status) = run.child.try_wait().unwrap() {
            panic!(
                "attune exited early with {status}\nstdout:\n{}\nstderr:\n{}",
                run.stdout.lock().unwrap(),
                run.stderr.lock().unwrap()
            );
        }
        assert!(started.elapsed() < limit, "not ready after {limit:?}\nstderr:\n{}", run.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, then the exit status (within a minute).
fn terminate(mut run: Running) -> (i32, String, String) {
    signal(&run, Signal::SIGTERM);
    let code = exit_code_within(&mut run, Duration::from_secs(60));
    let (out, err) = output(&run);
    (code, out, err)
}

fn signal(run: &Running, signal: Signal) {
    kill(Pid::from_raw(run.child.id() as i32), signal).unwrap();
}

/// The exit code once the process has exited; fails the test after `limit`.
fn exit_code_within(run: &mut Running, limit: Duration) -> i32 {
    let started = Instant::now();
    loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(100)); // let the readers drain
            return status.code().unwrap_or(-1);
        }
        assert!(
            started.elapsed() < limit,
            "attune did not exit within {limit:?}\nstderr:\n{}",
            run.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the process wrote so far: (stdout, stderr).
fn output(run: &Running) -> (String, String) {
    (run.stdout.lock().unwrap().clone(), run.stderr.lock().unwrap().clone())
}

/// Waits until the process logs `needle`.
fn wait_for_log(run: &mut Running, needle: &str, limit: Duration) {
    let started = Instant::now();
    while !run.stderr.lock().unwrap().contains(needle) {
        if let Some(status) = run.child.try_wait().unwrap() {
            panic!("attune exited with {status} before logging {needle:?}\nstderr:\n{}", run.stderr.lock().unwrap());
        }
        assert!(started.elapsed() < limit, "no {needle:?} after {limit:?}\nstderr:\n{}", run.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PostgreSQL processes whose command line names `data_dir`.
fn postgres_processes_of(data_dir: &Path) -> Vec<String> {
    let needle = data_dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmd| cmd.contains("postgres") && cmd.contains(&needle))
        .collect()
}

#[test]
fn up_creates_the_cluster_restarts_on_it_and_stops_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();

    // First start: initdb, migrations, core pack, first admin.
    let mut first = attune(data.path(), port, &["up"], &[]);
    wait_ready(&mut first, port, Duration::from_secs(180));
    let (code, stdout, stderr) = terminate(first);
    assert_eq!(code, 0, "SIGTERM exits 0\n{stderr}");
    assert!(stdout.contains(&format!("Attune API listening on http://127.0.0.1:{port}")), "{stdout}");
    assert!(stdout.contains("created tenant 'default' and user 'admin' with password"), "{stdout}");
    assert!(stderr.contains("creating the private PostgreSQL cluster"), "the first start runs initdb\n{stderr}");
    let password_file = data.path().join("admin_password");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&password_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the generated admin password is kept private");
    let password = std::fs::read_to_string(&password_file).unwrap();
    assert!(stdout.contains(password.trim()), "the saved password is the one printed");
    assert!(postgres_processes_of(data.path()).is_empty(), "no PostgreSQL process is left behind");

    // Second start: the cluster is reused (no initdb), no second admin is made.
    let mut second = attune(data.path(), port, &["up"], &[]);
    let took = wait_ready(&mut second, port, Duration::from_secs(60));
    eprintln!("second start ready in {took:?}");
    let (code, stdout, stderr) = terminate(second);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("creating the private PostgreSQL cluster"), "the cluster is reused\n{stderr}");
    assert!(!stdout.contains("created tenant"), "the admin exists already\n{stdout}");
    assert!(postgres_processes_of(data.path()).is_empty(), "no PostgreSQL process is left behind");
}

#[test]
fn serve_runs_a_subset_and_a_killed_process_leaves_a_reusable_cluster() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut run = attune(data.path(), port, &["serve", "api,executor"], &[("ATTUNE_ADMIN_PASSWORD", "pw-from-env")]);
    wait_ready(&mut run, port, Duration::from_secs(180));
    // SIGKILL: no clean shutdown, the cluster keeps running and must be joined next time.
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    let mut again = attune(data.path(), port, &["serve", "api"], &[]);
    wait_ready(&mut again, port, Duration::from_secs(60));
    let (code, stdout, stderr) = terminate(again);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("services=\"api\""), "{stderr}");
    assert!(!stdout.contains("created tenant"), "{stdout}");
    assert!(postgres_processes_of(data.path()).is_empty(), "no PostgreSQL process is left behind");
}

#[test]
fn a_bad_setting_stops_start_up_naming_key_and_value() {
    let data = tempfile::tempdir().unwrap();
    let run = attune(data.path(), 8080, &["up"], &[("ATTUNE_API_PORT", "eighty")]);
    let output = run.child.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let stderr = run.stderr.lock().unwrap().clone();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("api.port") && stderr.contains("eighty") && stderr.contains("ATTUNE_API_PORT"), "{stderr}");
    assert!(!data.path().join("pg").exists(), "nothing was started");
}

#[test]
fn an_unknown_service_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let run = attune(data.path(), 8080, &["serve", "api,bogus"], &[]);
    let output = run.child.wait_with_output().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let stderr = run.stderr.lock().unwrap().clone();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");
}

/// The `url` field of the start-up log line naming the private cluster.
fn cluster_url(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|l| l.contains("using the private PostgreSQL cluster"))?;
    let start = line.find("url=")? + 4;
    Some(line[start..].split_whitespace().next()?.to_string())
}

#[test]
fn up_holds_exactly_one_listen_connection() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut run = attune(data.path(), port, &["up"], &[("RUST_LOG", "info,sqlx=warn")]);
    wait_ready(&mut run, port, Duration::from_secs(180));
    let url = cluster_url(&run.stderr.lock().unwrap()).expect("the log names the cluster's URL");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Every service of the process (rule engine, scheduler, workers' lanes and cancel
    // watch, timers, custom sensors) waits on wake-ups; all through one connection.
    let listening = runtime.block_on(async {
        let pool = sqlx::PgPool::connect(&url).await.expect("the private cluster answers");
        let count = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = 'attune' AND application_name = 'attune' AND query LIKE 'LISTEN %'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        };
        let started = Instant::now();
        let mut seen = Vec::new();
        // The services subscribe as they start: watch for a few seconds.
        while started.elapsed() < Duration::from_secs(5) {
            seen.push(count().await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        pool.close().await;
        seen
    });
    let (code, _, stderr) = terminate(run);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(listening.last(), Some(&1), "one LISTEN connection once started: {listening:?}");
    assert!(listening.iter().all(|&n| n <= 1), "never more than one: {listening:?}");
}

#[test]
fn serve_without_the_api_drains_every_service_and_exits_0_promptly() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let services = ["executor", "sensor", "notifier", "bridge"];
    let mut run = attune(data.path(), port, &["serve", &services.join(",")], &[]);
    // No /ready without the api: the services are up once they log it (the notifier
    // says it idles once running), and have a moment to go round their loops.
    wait_for_log(&mut run, &format!("services=\"{}\"", services.join(",")), Duration::from_secs(180));
    wait_for_log(&mut run, "notifier: no WebSocket fan-out yet; idle", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));

    signal(&run, Signal::SIGTERM);
    let started = Instant::now();
    let code = exit_code_within(&mut run, Duration::from_secs(30));
    let took = started.elapsed();
    let (_, stderr) = output(&run);
    assert_eq!(code, 0, "a drained process exits 0\n{stderr}");
    assert!(took < Duration::from_secs(10), "nothing to wait for: stopped promptly, not in {took:?}\n{stderr}");
    assert!(stderr.contains("shutdown requested; draining"), "{stderr}");
    for service in services {
        assert!(stderr.contains(&format!("{service} draining")), "{service} says it drains\n{stderr}");
        assert!(stderr.contains(&format!("{service} stopped")), "{service} says it stopped\n{stderr}");
        assert!(
            stderr.contains(&format!("service stopped service=\"{service}\"")),
            "the process saw {service} return\n{stderr}"
        );
    }
    assert!(!stderr.contains("drain cut short"), "{stderr}");
    assert!(postgres_processes_of(data.path()).is_empty(), "no PostgreSQL process is left behind");
}

/// `POST`s `body` to the API; the JSON answer, after checking the status.
fn post(
    client: &reqwest::blocking::Client,
    port: u16,
    token: Option<&str>,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let mut request = client.post(format!("http://127.0.0.1:{port}{path}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert!(status.is_success(), "POST {path} {body}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_second_signal_cuts_the_drain_short() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut run = attune(data.path(), port, &["up"], &[]);
    wait_ready(&mut run, port, Duration::from_secs(180));

    // An action that outlasts the test, running: the worker's drain would wait for it.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let user = serde_json::json!({"login": "drainer", "password": "drain-password-1"});
    post(&client, port, None, "/auth/register", user.clone());
    let login = post(&client, port, None, "/auth/login", user);
    let token = login["access_token"].as_str().expect("an access token").to_string();
    post(&client, port, Some(&token), "/api/v1/packs", serde_json::json!({"ref": "t", "version": "1"}));
    post(
        &client,
        port,
        Some(&token),
        "/api/v1/actions",
        serde_json::json!({"ref": "t.sleepy", "runner_type": "shell", "command": "sleep 60"}),
    );
    let execution = post(&client, port, Some(&token), "/api/v1/executions", serde_json::json!({"action": "t.sleepy"}));
    let id = execution["id"].as_i64().expect("an execution id");
    let started = Instant::now();
    loop {
        let view: serde_json::Value = client
            .get(format!("http://127.0.0.1:{port}/api/v1/executions/{id}"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if view["status"] == "running" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "execution {id} not running: {view}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // First signal: the drain starts, and waits for the action.
    signal(&run, Signal::SIGTERM);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "still draining 1 s after the first signal\n{}",
        run.stderr.lock().unwrap()
    );
    // Second signal: out at once, non-zero (128 + SIGTERM).
    signal(&run, Signal::SIGTERM);
    let code = exit_code_within(&mut run, Duration::from_secs(5));
    let (_, stderr) = output(&run);
    assert_eq!(code, 143, "a drain cut short by SIGTERM exits 143\n{stderr}");
    assert!(stderr.contains("shutdown requested; draining"), "{stderr}");
    assert!(stderr.contains("second signal: drain cut short"), "{stderr}");

    // The private cluster was left running, as by a killed process: the next start joins
    // it, and its clean stop stops the cluster.
    let mut again = attune(data.path(), port, &["serve", "api"], &[]);
    wait_ready(&mut again, port, Duration::from_secs(60));
    let (code, _, stderr) = terminate(again);
    assert_eq!(code, 0, "{stderr}");
    assert!(postgres_processes_of(data.path()).is_empty(), "no PostgreSQL process is left behind");
}
