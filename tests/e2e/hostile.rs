//! Hostile actions ("Isolation and secure defaults"): a tenant admin's actions try to
//! reach what is not theirs — the service's files and database, its processes, other
//! executions, the host's filesystem and network, the machine's memory — with real
//! processes in the real sandbox (bubblewrap, the default `sandbox.mode`), and fail.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use attune_core::child::SandboxMode;
use attune_tests::{eventually, TestApp, User};
use rand::Rng;
use serde_json::{json, Value};

/// A tenant admin with a pack `h`.
async fn admin(app: &TestApp, login: &str) -> User {
    let u = app.register(login).await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "h", "version": "1"})).await.status, 201);
    u
}

/// Creates action `h.<name>` from `body` (ref and pack filled in).
async fn action(app: &TestApp, u: &User, name: &str, mut body: Value) {
    body["ref"] = json!(format!("h.{name}"));
    let a = app.post(u, "/api/v1/actions", body.clone()).await;
    assert_eq!(a.status, 201, "{body}: {:?}", a.body);
}

/// Starts `h.<name>`; returns the execution's id.
async fn start(app: &TestApp, u: &User, name: &str) -> i64 {
    let r = app.post(u, "/api/v1/executions", json!({"action": format!("h.{name}")})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

/// Creates the shell action `h.<name>` running `command`, runs it, and returns the
/// finished execution.
async fn shell(app: &TestApp, u: &User, name: &str, command: &str) -> Value {
    action(app, u, name, json!({"runner_type": "shell", "command": command})).await;
    let id = start(app, u, name).await;
    app.finished_execution(u, id).await
}

fn stdout(ex: &Value) -> &str {
    ex["result"]["stdout"].as_str().unwrap_or_default()
}

fn error(ex: &Value) -> &str {
    ex["result"]["error"].as_str().unwrap_or_default()
}

/// The execution failed, and its error says `why`.
fn failed_with(ex: &Value, why: &str) {
    assert_eq!(ex["status"], "failed", "{ex}");
    assert!(error(ex).contains(why), "expected {why:?} in the error: {ex}");
}

/// A folder of the test that the action's user may write into.
fn open_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

#[tokio::test]
async fn the_data_dir_and_its_secrets_are_out_of_reach() {
    let secret = format!("jwt-{}", rand::thread_rng().gen::<u64>());
    let mut data_dir = PathBuf::new();
    let app = TestApp::spawn_pipeline_with(|c| {
        data_dir = c.data_dir.clone();
        std::fs::create_dir_all(c.data_dir.join("secrets")).unwrap();
        std::fs::write(c.data_dir.join("secrets/jwt_secret"), &secret).unwrap();
    })
    .await;
    let u = admin(&app, "thief").await;
    let file = data_dir.join("secrets/jwt_secret");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), secret, "the file is there on the host");

    let ex = shell(&app, &u, "read_secret", &format!("cat {}", file.display())).await;
    failed_with(&ex, "No such file or directory");
    assert!(!ex.to_string().contains(&secret), "{ex}");

    let ex = shell(&app, &u, "list_data", &format!("ls -la {}", data_dir.display())).await;
    failed_with(&ex, "No such file or directory");

    // The path is the sandbox's own (its private /tmp): what it writes there stays there.
    let ex = shell(
        &app,
        &u,
        "plant",
        &format!("mkdir -p {0}/secrets && echo x > {0}/secrets/jwt_secret", data_dir.display()),
    )
    .await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), secret, "the host's file is untouched");
}

#[tokio::test]
async fn the_database_socket_is_out_of_reach() {
    let app = TestApp::spawn_pipeline().await;
    let u = admin(&app, "sqlthief").await;
    let dirs: String = sqlx::query_scalar("SHOW unix_socket_directories").fetch_one(app.pool()).await.unwrap();
    let port: String = sqlx::query_scalar("SHOW port").fetch_one(app.pool()).await.unwrap();
    let Some(dir) = dirs.split(',').map(str::trim).find(|d| !d.is_empty() && !d.starts_with('@')) else {
        eprintln!("the test server has no socket folder ({dirs:?}): nothing to hide");
        return;
    };
    let socket = Path::new(dir).join(format!(".s.PGSQL.{port}"));
    if !socket.exists() {
        eprintln!("the test server's socket {} is not on this machine: nothing to hide", socket.display());
        return;
    }

    let ex = shell(&app, &u, "list_socket_dir", &format!("ls -la {dir}")).await;
    failed_with(&ex, "No such file or directory");

    let connect = format!(
        "python3 -c \"import socket; s = socket.socket(socket.AF_UNIX); s.connect('{}'); print('connected')\"",
        socket.display()
    );
    let ex = shell(&app, &u, "connect_socket", &connect).await;
    failed_with(&ex, "FileNotFoundError");
    assert!(!stdout(&ex).contains("connected"), "{ex}");
}

#[tokio::test]
async fn the_service_process_is_invisible_and_cannot_be_signalled() {
    let app = TestApp::spawn_pipeline().await;
    let u = admin(&app, "stopper").await;
    let server = std::process::id();

    let ex = shell(&app, &u, "environ", &format!("cat /proc/{server}/environ")).await;
    failed_with(&ex, "No such file or directory");
    assert!(!stdout(&ex).contains("PATH="), "{ex}");

    let ex = shell(&app, &u, "stop", &format!("kill -STOP {server}")).await;
    failed_with(&ex, "No such process");

    // Its /proc shows the sandbox's few processes only.
    let ex = shell(&app, &u, "ps", "ls /proc | grep -c '^[0-9]*$'").await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let seen: u32 = stdout(&ex).trim().parse().unwrap();
    assert!(seen < 10, "the sandbox sees {seen} processes: {ex}");

    // The service was not stopped: it still answers.
    assert_eq!(app.get(&u, "/api/v1/executions").await.status, 200);
}

/// Host pids of the `sleep` processes whose length starts with `marker`.
fn sleepers(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let argv: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let zombie = std::fs::read_to_string(entry.path().join("status"))
            .map(|s| s.lines().any(|l| l.starts_with("State:") && l.contains('Z')))
            .unwrap_or(true);
        if argv.len() >= 2 && argv[0].ends_with("sleep") && argv[1].starts_with(marker) && !zombie {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn what_an_action_leaves_behind_dies_with_it() {
    let app = TestApp::spawn_pipeline().await;
    let u = admin(&app, "daemonizer").await;
    let marker = format!("3000.{}", rand::thread_rng().gen_range(100_000..999_999));
    // A setsid sleeper and a double-forked one; the action waits until both run.
    let command = format!(
        "setsid sleep {marker}1 &\n(sleep {marker}2 &)\n\
         while [ \"$(cat /proc/[0-9]*/comm | grep -c '^sleep$')\" -lt 2 ]; do sleep 0.02; done\necho started"
    );
    let ex = shell(&app, &u, "daemons", &command).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(stdout(&ex), "started\n");
    eventually("the leftovers to be gone", Duration::from_secs(5), || async {
        sleepers(&marker).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_action_writes_only_to_its_scratch_folder_and_the_bound_folders() {
    let bound = open_folder();
    let bound_path = bound.path().to_path_buf();
    let app = TestApp::spawn_pipeline_with(|c| c.sandbox.bind = vec![bound_path.clone()]).await;
    let u = admin(&app, "vandal").await;

    let ex = shell(&app, &u, "usr", "touch /usr/x").await;
    failed_with(&ex, "Read-only file system");
    assert!(!Path::new("/usr/x").exists());

    let escape = format!("attune-escape-{}", rand::thread_rng().gen::<u32>());
    let ex = shell(&app, &u, "root", &format!("touch /tmp/../{escape}")).await;
    failed_with(&ex, "Read-only file system");
    assert!(!Path::new("/").join(&escape).exists());

    // The sandbox's /tmp is its own: what it writes there never reaches the host's.
    let ex = shell(&app, &u, "tmp", &format!("echo x > /tmp/{escape} && cat /tmp/{escape}")).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert!(!std::env::temp_dir().join(&escape).exists());

    // Its working directory, $HOME and $TMPDIR are its scratch folder, which it may write.
    let ex =
        shell(&app, &u, "scratch", "echo x > here && echo y > \"$HOME/home\" && echo z > \"$TMPDIR/tmp\" && pwd").await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert!(stdout(&ex).contains("attune-run-"), "{ex}");

    // A bound folder is writable, at its own path.
    let ex = shell(&app, &u, "bound", &format!("echo from-the-action > {}/out", bound_path.display())).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(std::fs::read_to_string(bound_path.join("out")).unwrap(), "from-the-action\n");
}

#[tokio::test]
async fn another_executions_scratch_folder_is_out_of_reach() {
    let shared = open_folder();
    let s = shared.path().to_path_buf();
    let app = TestApp::spawn_pipeline_with(|c| c.sandbox.bind = vec![s.clone()]).await;
    let u = admin(&app, "neighbour").await;
    let s = s.display();
    // The first keeps a note in its scratch folder and says where, then waits for the second.
    let first = format!(
        "echo secret-of-the-first > note\npwd > {s}/path.tmp && mv {s}/path.tmp {s}/path\n\
         i=0; while [ ! -e {s}/done ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\ncat note; pwd"
    );
    // The second, running at the same time, tries to read it.
    let second = format!(
        "while [ ! -s {s}/path ]; do sleep 0.05; done\np=$(cat {s}/path)\n\
         if cat \"$p/note\"; then echo LEAKED; else echo DENIED; fi\n\
         if ls \"$p/..\" >/dev/null 2>&1; then echo LISTED; fi\ntouch {s}/done"
    );
    action(&app, &u, "first", json!({"runner_type": "shell", "command": first})).await;
    action(&app, &u, "second", json!({"runner_type": "shell", "command": second})).await;
    let a = start(&app, &u, "first").await;
    let b = start(&app, &u, "second").await;
    let (a, b) = (app.finished_execution(&u, a).await, app.finished_execution(&u, b).await);
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(b["status"], "succeeded", "{b}");
    let mut lines = stdout(&a).lines();
    assert_eq!(lines.next(), Some("secret-of-the-first"), "{a}");
    let scratch = PathBuf::from(lines.next().unwrap());
    assert_eq!(stdout(&b), "DENIED\n", "{b}");
    assert!(!b.to_string().contains("secret-of-the-first"), "{b}");
    // And it is gone once its execution ended.
    eventually("the first's scratch folder to be removed", Duration::from_secs(5), || async {
        (!scratch.exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_action_over_its_memory_limit_fails_naming_the_limit() {
    let app = TestApp::spawn_pipeline_with(|c| c.sandbox.limits.memory_mb = 256).await;
    let u = admin(&app, "glutton").await;
    let code = "def run(params):\n    hog = bytearray(2 * 1024 ** 3)\n    return {'got': len(hog)}\n";
    action(&app, &u, "hog", json!({"runner_type": "python", "code": code})).await;
    let ex = app.finished_execution(&u, start(&app, &u, "hog").await).await;
    failed_with(&ex, "exceeded its memory limit (256 MiB, sandbox.limits.memory_mb)");
    assert!(error(&ex).contains("MemoryError"), "{ex}");
    assert_eq!(ex["result"]["failure_reason"], "resource_limit");

    // Within the limit, the same runner works.
    let small = "def run(params):\n    return {'got': len(bytearray(16 * 1024 ** 2))}\n";
    action(&app, &u, "small", json!({"runner_type": "python", "code": small})).await;
    let ex = app.finished_execution(&u, start(&app, &u, "small").await).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["output"]["got"], 16 * 1024 * 1024);
}

#[tokio::test]
async fn an_action_over_its_process_limit_fails_naming_the_limit() {
    let app = TestApp::spawn_pipeline_with(|c| c.sandbox.limits.processes = 16).await;
    let u = admin(&app, "forker").await;
    let ex = shell(&app, &u, "bomb", "for i in $(seq 40); do sleep 5 & done; wait").await;
    failed_with(&ex, "exceeded its process limit (16, sandbox.limits.processes)");
}

#[tokio::test]
async fn an_action_without_network_cannot_connect_and_one_with_it_can() {
    let app = TestApp::spawn_pipeline().await;
    let u = admin(&app, "caller").await;
    let port = app.url.rsplit(':').next().unwrap();
    let code = format!(
        "import socket\ndef run(params):\n    socket.create_connection(('127.0.0.1', {port}), timeout=5).close()\n    return {{'connected': True}}\n"
    );
    action(&app, &u, "offline", json!({"runner_type": "python", "code": code, "network": false})).await;
    action(&app, &u, "online", json!({"runner_type": "python", "code": code})).await;
    let offline = app.finished_execution(&u, start(&app, &u, "offline").await).await;
    failed_with(&offline, "Connection refused");
    let online = app.finished_execution(&u, start(&app, &u, "online").await).await;
    assert_eq!(online["status"], "succeeded", "{online}");
    assert_eq!(online["result"]["output"], json!({"connected": true}));
}

#[tokio::test]
async fn sandboxed_actions_run_as_an_unprivileged_user_and_unsandboxed_ones_as_the_service() {
    let service = nix::unistd::geteuid().as_raw();
    let app = TestApp::spawn_pipeline().await;
    let u = admin(&app, "whoami").await;
    let ex = shell(&app, &u, "id", "id -u").await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let uid: u32 = stdout(&ex).trim().parse().unwrap();
    assert!(uid != 0 && uid != service, "sandboxed, it runs as uid {uid} (the service is {service})");

    // The documented opt-out: `sandbox.mode = none` (ATTUNE_SANDBOX=none).
    let app = TestApp::spawn_pipeline_with(|c| c.sandbox.mode = SandboxMode::None).await;
    let u = admin(&app, "whoami2").await;
    let ex = shell(&app, &u, "id", "id -u").await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(stdout(&ex).trim(), service.to_string(), "unsandboxed, it runs as the service's user");
}
