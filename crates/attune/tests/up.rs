//! `attune up` as a user runs it: a real child process on a private cluster in a temp
//! data dir, reached over HTTP, stopped with SIGTERM.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

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

/// The private cluster's socket folder, from the start-up log's URL (`...?host=<dir>`).
fn cluster_socket(stderr: &str) -> PathBuf {
    let url = cluster_url(stderr).expect("the log names the cluster's URL");
    PathBuf::from(url.split_once("host=").expect("the URL names the socket folder").1)
}

/// A generated database password, from `<data_dir>/secrets/`.
fn secret(data_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(data_dir.join("secrets").join(name)).unwrap().trim().to_string()
}

/// Connects to the private cluster's socket as `user`, with `password` when given.
async fn connect_as(
    socket: &Path,
    user: &str,
    password: Option<&str>,
    database: &str,
) -> Result<PgConnection, sqlx::Error> {
    let mut options = PgConnectOptions::new().socket(socket).username(user).database(database);
    if let Some(password) = password {
        options = options.password(password);
    }
    PgConnection::connect_with(&options).await
}

/// The SQLSTATE of a failed statement ("ok" when it succeeds).
async fn sqlstate(conn: &mut PgConnection, sql: &str) -> String {
    match sqlx::query(sql).execute(&mut *conn).await {
        Ok(_) => "ok".into(),
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().to_string(),
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[test]
fn up_holds_exactly_one_listen_connection() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut run = attune(data.path(), port, &["up"], &[("RUST_LOG", "info,sqlx=warn")]);
    wait_ready(&mut run, port, Duration::from_secs(180));
    let socket = cluster_socket(&run.stderr.lock().unwrap());
    let options = PgConnectOptions::new()
        .socket(&socket)
        .username("postgres")
        .password(&secret(data.path(), "postgres_password"))
        .database("attune");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Every service of the process (rule engine, scheduler, workers' lanes and cancel
    // watch, timers, custom sensors) waits on wake-ups; all through one connection, named
    // `attune listener <process>` (how other processes see that this one listens).
    let listening = runtime.block_on(async {
        let pool = sqlx::PgPool::connect_with(options).await.expect("the private cluster answers");
        let count = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = 'attune' AND application_name LIKE 'attune listener %'
                    AND query LIKE 'LISTEN %'",
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
    // Without the api the notifier serves /ws on a port of its own.
    let notifier_port = free_port().to_string();
    let mut run =
        attune(data.path(), port, &["serve", &services.join(",")], &[("ATTUNE_NOTIFIER_PORT", &notifier_port)]);
    // No /ready without the api: the services are up once they log it (the notifier
    // once it streams the change log), and have a moment to go round their loops.
    wait_for_log(&mut run, &format!("services=\"{}\"", services.join(",")), Duration::from_secs(180));
    wait_for_log(&mut run, "notifier: streaming the change log", Duration::from_secs(30));
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
    let mut run = attune(data.path(), port, &["up"], &[("ATTUNE_ALLOW_REGISTRATION", "true")]);
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

/// `GET`s `path` with `token`; the JSON answer.
fn get(client: &reqwest::blocking::Client, port: u16, token: &str, path: &str) -> serde_json::Value {
    let response = client.get(format!("http://127.0.0.1:{port}{path}")).bearer_auth(token).send().unwrap();
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().unwrap()
}

/// Attributes of the roles Attune made: `name` then, as t/f, superuser, inherit,
/// createrole, createdb, login, replication, bypassrls.
const ROLE_ATTRIBUTES: &str = "SELECT concat_ws(' ', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
                                         rolcanlogin, rolreplication, rolbypassrls)
                                 FROM pg_roles WHERE rolname LIKE 'attune%' ORDER BY rolname";

#[test]
fn up_requires_passwords_and_runs_the_services_as_a_least_privileged_role() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let env = [
        ("ATTUNE_ALLOW_REGISTRATION", "true"),
        ("ATTUNE_ADMIN_PASSWORD", "admin-password-from-env"),
        ("ATTUNE_JWT_SECRET", "jwt-secret-from-the-environment-0123456789"),
    ];
    let mut run = attune(data.path(), port, &["up"], &env);
    wait_ready(&mut run, port, Duration::from_secs(180));
    let socket = cluster_socket(&run.stderr.lock().unwrap());

    // (c) The services work as the service role: webhook -> rule engine -> scheduler ->
    // worker, and the API under row-level security.
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let user = serde_json::json!({"login": "locked", "password": "locked-password-1"});
    post(&client, port, None, "/auth/register", user.clone());
    let token = post(&client, port, None, "/auth/login", user)["access_token"].as_str().unwrap().to_string();
    post(&client, port, Some(&token), "/api/v1/packs", serde_json::json!({"ref": "p", "version": "1"}));
    let trigger =
        post(&client, port, Some(&token), "/api/v1/triggers", serde_json::json!({"ref": "p.hook", "type": "webhook"}));
    let webhook = trigger["webhook_url"].as_str().unwrap().to_string();
    post(
        &client,
        port,
        Some(&token),
        "/api/v1/rules",
        serde_json::json!({"ref": "p.r", "trigger": "p.hook", "action": "core.echo",
                           "action_params": {"message": "{{ trigger.data.msg }}"}}),
    );
    let fired = client.post(webhook.replace("localhost", "127.0.0.1")).json(&serde_json::json!({"msg": "hi"})).send();
    assert_eq!(fired.unwrap().status(), 202);
    let started = Instant::now();
    loop {
        let list = get(&client, port, &token, "/api/v1/executions?rule=p.r");
        if list["data"][0]["status"] == "succeeded" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the rule's execution did not succeed: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // (a) Reaching the socket is not enough: every role needs its password.
        for (user, password) in [
            ("postgres", None),
            ("postgres", Some("wrong")),
            ("attune_service", None),
            ("attune_owner", None),
            ("attune_api", None),
        ] {
            let refused = connect_as(&socket, user, password, "attune").await;
            assert!(refused.is_err(), "{user} with {password:?} must be refused");
        }

        let superuser = secret(data.path(), "postgres_password");
        let mut admin = connect_as(&socket, "postgres", Some(&superuser), "attune").await.expect("the superuser logs in");
        let rules: Vec<String> =
            sqlx::query_scalar("SELECT type || ' ' || auth_method FROM pg_hba_file_rules").fetch_all(&mut admin).await.unwrap();
        assert_eq!(rules, ["local scram-sha-256"], "one pg_hba line, no trust");
        let roles: Vec<String> = sqlx::query_scalar(ROLE_ATTRIBUTES).fetch_all(&mut admin).await.unwrap();
        assert_eq!(
            roles,
            [
                // name       super inherit createrole createdb login replication bypassrls
                "attune_api f t f f f f f",
                "attune_owner f t f f f f f",
                // The BI logins' group (docs/reporting.md): no login, no attribute.
                "attune_reporting f t f f f f f",
                "attune_service f f f f t f t",
            ]
        );
        let not_owned: Vec<String> = sqlx::query_scalar(
            "SELECT c.oid::regclass::text FROM pg_class c
              WHERE (c.relnamespace = 'attune'::regnamespace OR c.oid = '_sqlx_migrations'::regclass)
                AND c.relowner <> 'attune_owner'::regrole
             UNION ALL SELECT 'database' FROM pg_database WHERE datname = 'attune' AND datdba <> 'attune_owner'::regrole
             UNION ALL SELECT 'schema' FROM pg_namespace WHERE nspname = 'attune' AND nspowner <> 'attune_owner'::regrole",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert!(not_owned.is_empty(), "the owner role owns everything: {not_owned:?}");
        let memberships: Vec<String> = sqlx::query_scalar(
            "SELECT member::regrole::text || ' in ' || roleid::regrole::text
                    || CASE WHEN bool_or(admin_option) THEN ' (admin)' ELSE '' END
               FROM pg_auth_members WHERE member::regrole::text LIKE 'attune%' GROUP BY member, roleid ORDER BY 1",
        )
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert_eq!(
            memberships,
            [
                "attune_owner in attune_api (admin)",
                // It adds BI logins to their group (`attune reporting grant`, docs/reporting.md).
                "attune_owner in attune_reporting (admin)",
                "attune_service in attune_api"
            ]
        );
        admin.close().await.unwrap();

        // (b) The services' role: all rows, but no way around the audit log's protection.
        let password = secret(data.path(), "attune_service_password");
        let mut service =
            connect_as(&socket, "attune_service", Some(&password), "attune").await.expect("the service role logs in");
        let users: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.identity").fetch_one(&mut service).await.unwrap();
        assert_eq!(users, 2, "BYPASSRLS: the services see every tenant's rows");
        let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.audit_log").fetch_one(&mut service).await.unwrap();
        assert!(audited > 0);
        for refused in [
            "SET session_replication_role = replica",
            "DELETE FROM attune.audit_log",
            "UPDATE attune.audit_log SET action = 'x'",
            "TRUNCATE attune.audit_log",
            "ALTER TABLE attune.audit_log DISABLE TRIGGER audit_log_no_update",
            "DROP TRIGGER audit_log_no_update ON attune.audit_log",
            "SET ROLE attune_owner",
            "SET ROLE postgres",
            "CREATE TABLE attune.mine (id int)",
            "CREATE TABLE public.mine (id int)",
            "CREATE ROLE intruder LOGIN",
            "ALTER ROLE attune_service SUPERUSER",
            "COPY (SELECT 1) TO PROGRAM 'true'",
        ] {
            assert_eq!(sqlstate(&mut service, refused).await, "42501", "{refused}");
        }
        assert_eq!(
            sqlstate(&mut service, "INSERT INTO attune.audit_log (actor_type, action, entity_type) VALUES ('service', 'x', 'y')")
                .await,
            "ok",
            "the log is appended to"
        );
        let after: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.audit_log").fetch_one(&mut service).await.unwrap();
        assert_eq!(after, audited + 1, "nothing was deleted");
        // API requests switch to attune_api, which row-level security confines (no tenant set: nothing).
        let mut tx = service.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE attune_api").execute(&mut *tx).await.unwrap();
        let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.identity").fetch_one(&mut *tx).await.unwrap();
        assert_eq!(visible, 0, "attune_api sees no tenant's rows without its tenant");
        tx.rollback().await.unwrap();
        service.close().await.unwrap();
    });

    // Secrets stay private: the folder 0700, every file 0600; none reached PostgreSQL's
    // processes' environment.
    use std::os::unix::fs::PermissionsExt;
    let secrets = data.path().join("secrets");
    assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o700);
    for entry in std::fs::read_dir(&secrets).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.metadata().unwrap().permissions().mode() & 0o777, 0o600, "{:?}", entry.path());
    }
    let cluster = socket.parent().unwrap().to_string_lossy().to_string();
    let mut seen = 0;
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if !String::from_utf8_lossy(&cmdline).contains(&cluster) {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let environ = String::from_utf8_lossy(&environ);
        seen += 1;
        for (name, _) in env.iter().filter(|(n, _)| n.ends_with("PASSWORD") || n.ends_with("SECRET")) {
            assert!(!environ.contains(name), "{name} reached {:?}", entry.path());
        }
    }
    assert!(seen > 0, "the cluster's processes were found");

    let (code, _, stderr) = terminate(run);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn an_earlier_versions_trust_cluster_is_locked_down_at_start() {
    use attune_core::local_pg::{Durability, LocalPostgres};
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // What an earlier version left: a cluster with `trust` for everyone, database `attune`
    // migrated by and owned by `postgres`, no other roles, no password anywhere.
    let pg = LocalPostgres::start(data.path(), Durability::Ephemeral).unwrap();
    runtime.block_on(async {
        let mut admin = PgConnection::connect_with(&pg.superuser_options("postgres")).await.unwrap();
        sqlx::query("CREATE DATABASE attune").execute(&mut admin).await.unwrap();
        let pool = attune_core::db::connect_with(pg.superuser_options("attune"), 1).await.unwrap();
        attune_core::db::migrate(&pool).await.unwrap();
        pool.close().await;
        sqlx::query("ALTER ROLE postgres PASSWORD NULL").execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
    });
    pg.stop().unwrap();
    std::fs::write(pg.data_dir().join("pg_hba.conf"), "local all all trust\n").unwrap();
    std::fs::remove_dir_all(data.path().join("secrets")).unwrap();

    let port = free_port();
    let mut run = attune(data.path(), port, &["up"], &[]);
    wait_ready(&mut run, port, Duration::from_secs(180));
    let stderr = run.stderr.lock().unwrap().clone();
    assert!(stderr.contains("setting the private cluster's superuser password"), "{stderr}");
    let socket = cluster_socket(&stderr);
    runtime.block_on(async {
        assert!(connect_as(&socket, "postgres", None, "attune").await.is_err(), "trust is gone");
        let superuser = secret(data.path(), "postgres_password");
        let mut admin = connect_as(&socket, "postgres", Some(&superuser), "attune").await.unwrap();
        let rules: Vec<String> =
            sqlx::query_scalar("SELECT auth_method FROM pg_hba_file_rules").fetch_all(&mut admin).await.unwrap();
        assert_eq!(rules, ["scram-sha-256"]);
        let not_owned: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_class c
              WHERE (c.relnamespace = 'attune'::regnamespace OR c.oid = '_sqlx_migrations'::regclass)
                AND c.relowner <> 'attune_owner'::regrole",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(not_owned, 0, "the earlier database now belongs to the owner role");
        let functions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'attune'::regnamespace AND proowner <> 'attune_owner'::regrole",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(functions, 0);
        let service: String = sqlx::query_scalar(
            "SELECT usename::text FROM pg_stat_activity WHERE datname = 'attune' AND application_name = 'attune' LIMIT 1",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(service, "attune_service", "the services connect as the service role");
        admin.close().await.unwrap();
    });
    let (code, stdout, stderr) = terminate(run);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("created tenant 'default'"), "the services bootstrap the converted database\n{stdout}");
}
