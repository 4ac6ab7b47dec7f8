//! The `attune` CLI client (issue 14) driven as a user drives it: the real binary as a
//! subprocess, against a running instance, with a home directory of its own per test
//! (its profile and tokens live there). Every answer is read from the process's exit
//! code, stdout (parsed as JSON with `-o json`) and stderr.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use attune_tests::processes::attune_binary;
use attune_tests::{eventually, TestApp, User, PASSWORD};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// How long one CLI command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(90);

/// What a CLI process did.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    #[track_caller]
    fn ok(self) -> Ran {
        assert_eq!(self.code, 0, "the command failed: {self:?}");
        assert!(!self.stdout.contains('\x1b') && !self.stderr.contains('\x1b'), "no colour off a terminal: {self:?}");
        self
    }
}

/// A user's shell: the `attune` binary with a home (and config dir) of its own.
struct Shell {
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Shell {
    fn new() -> Shell {
        Shell { home: tempfile::tempdir().unwrap(), env: Vec::new() }
    }

    fn with_env(mut self, name: &str, value: &str) -> Shell {
        self.env.push((name.into(), value.into()));
        self
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join(".config/attune")
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(attune_binary());
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join(".config"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Ran {
        self.run_with_stdin(args, "").await
    }

    async fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Ran {
        let mut child = self.command(args).spawn().expect("the attune binary starts");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = tokio::time::timeout(COMMAND_LIMIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("attune {args:?} did not end within {COMMAND_LIMIT:?}"))
            .unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `attune login` as `user` (password on stdin).
    async fn login(&self, app: &TestApp, user: &User) {
        let ran = self
            .run_with_stdin(
                &["login", "--url", &app.url, "--user", &user.login, "--password-stdin"],
                &format!("{PASSWORD}\n"),
            )
            .await
            .ok();
        assert!(ran.stdout.contains(&format!("Logged in to {} as {}", app.url, user.login)), "{ran:?}");
    }
}

/// Writes `files` (path, content, executable) under a new directory `root/name`.
fn write_pack(root: &Path, name: &str, files: &[(&str, &str, bool)]) -> PathBuf {
    let dir = root.join(name);
    for (path, content, executable) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        let mode = if *executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

/// A pack with a shell action (`greet`), a webhook trigger, a rule, and a workflow.
fn demo_pack(root: &Path, greeting: &str) -> PathBuf {
    let greet_sh = format!(
        "#!/bin/sh\ni=0\nwhile [ \"$i\" -lt \"$ATTUNE_PARAM_TIMES\" ]; do echo \"{greeting}, $ATTUNE_PARAM_NAME!\"; i=$((i+1)); done\n\
         printf '{{\"greeted\": \"%s\", \"times\": %s}}\\n' \"$ATTUNE_PARAM_NAME\" \"$ATTUNE_PARAM_TIMES\"\n"
    );
    write_pack(
        root,
        "demo",
        &[
            ("pack.yaml", "ref: demo\nversion: 1.0.0\ndescription: the CLI's test pack\n", false),
            (
                "actions/greet.yaml",
                "name: greet\nrunner_type: shell\nentry_point: greet.sh\nparameters:\n  name: {type: string, required: true}\n  times: {type: integer, default: 1}\n",
                false,
            ),
            ("actions/greet.sh", &greet_sh, true),
            ("triggers/signup.yaml", "name: signup\ntype: webhook\n", false),
            (
                "rules/greet_signups.yaml",
                "name: greet_signups\ntrigger: demo.signup\naction: demo.greet\naction_params:\n  name: \"{{ trigger.data.user }}\"\n",
                false,
            ),
            (
                "actions/onboard.yaml",
                "name: onboard\nrunner_type: workflow\nworkflow: onboard\nparameters:\n  name: {type: string, required: true}\n",
                false,
            ),
            (
                "workflows/onboard.yaml",
                "tasks:\n  - name: welcome\n    action: demo.greet\n    input: {name: \"{{ execution.params.name }}\"}\n\
                 \x20 - name: pause\n    action: core.sleep\n    depends_on: [welcome]\n    input: {seconds: 0.3}\n\
                 \x20 - name: follow_up\n    action: demo.greet\n    depends_on: [pause]\n    input: {name: \"{{ execution.params.name }}\", times: 2}\n\
                 output:\n  greeted: \"{{ task_follow_up.result.output.greeted }}\"\n",
                false,
            ),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_says_what_to_do_when_not_logged_in_or_the_server_is_down() {
    // No profile at all.
    let shell = Shell::new();
    let ran = shell.run(&["action", "list"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("not logged in") && ran.stderr.contains("attune login --url"), "{ran:?}");
    assert!(ran.stdout.is_empty(), "{ran:?}");

    // A server that is not there: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let shell = Shell::new().with_env("ATTUNE_URL", &url).with_env("ATTUNE_TOKEN", "anything");
    let ran = shell.run(&["execution", "list"]).await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stderr.contains(&format!("cannot reach the Attune server at {url}")), "{ran:?}");
    assert!(ran.stderr.contains("attune up"), "says how to start one: {ran:?}");
    let ran = Shell::new().run_with_stdin(&["login", "--url", &url, "--user", "ada", "--password-stdin"], "pw\n").await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stderr.contains("cannot reach"), "{ran:?}");

    // Usage errors are 2, with the bad input named.
    let ran = Shell::new().run(&["login", "--url", "localhost:8080", "--user", "x", "--password-stdin"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("\"localhost:8080\" is not a server URL"), "{ran:?}");
    assert_eq!(Shell::new().run(&["execution", "frobnicate"]).await.code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_login_keeps_tokens_private_refreshes_them_and_logs_out() {
    let app = TestApp::spawn().await;
    let ada = app.register("ada").await;
    let shell = Shell::new();

    let ran = shell.run_with_stdin(&["login", "--url", &app.url, "--user", "ada", "--password-stdin"], "wrong\n").await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stderr.contains("wrong login or password"), "{ran:?}");

    shell.login(&app, &ada).await;
    let credentials = shell.config_dir().join("credentials/default.json");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&credentials), 0o600, "tokens are the owner's only");
    assert_eq!(mode(&shell.config_dir()), 0o700);
    let config = std::fs::read_to_string(shell.config_dir().join("config.yaml")).unwrap();
    assert!(config.contains(&app.url) && !config.contains("token"), "the config holds no token: {config}");

    let me = shell.run(&["whoami", "-o", "json"]).await.ok().json();
    assert_eq!(me["user"]["login"], "ada");
    assert_eq!(me["user"]["role"], "admin");
    assert_eq!(me["url"], app.url);

    // An access token about to expire is refreshed before the request, transparently;
    // the refresh token rotates (the old one is spent).
    let mut stored: Value = serde_json::from_slice(&std::fs::read(&credentials).unwrap()).unwrap();
    let old_refresh = stored["refresh_token"].clone();
    stored["expires_at"] = "2020-01-01T00:00:00Z".into();
    std::fs::write(&credentials, stored.to_string()).unwrap();
    let ran = shell.run(&["action", "list", "-o", "json"]).await.ok();
    assert!(ran.json().as_array().unwrap().iter().any(|a| a["ref"] == "core.echo"), "{ran:?}");
    let after: Value = serde_json::from_slice(&std::fs::read(&credentials).unwrap()).unwrap();
    assert_ne!(after["refresh_token"], old_refresh, "refreshed");
    assert_eq!(mode(&credentials), 0o600, "still the owner's only after the refresh");
    // A token the server refuses (401) is refreshed once and the request retried.
    let mut forged = after.clone();
    forged["access_token"] = "not-a-token".into();
    std::fs::write(&credentials, forged.to_string()).unwrap();
    shell.run(&["whoami"]).await.ok();

    // ATTUNE_URL/ATTUNE_TOKEN override the profile, for scripts.
    let scripted = Shell::new().with_env("ATTUNE_URL", &app.url).with_env("ATTUNE_TOKEN", &ada.token);
    assert_eq!(scripted.run(&["whoami", "-o", "json"]).await.ok().json()["user"]["login"], "ada");
    let bad = Shell::new().with_env("ATTUNE_URL", &app.url).with_env("ATTUNE_TOKEN", "forged");
    let ran = bad.run(&["whoami"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("ATTUNE_TOKEN was refused"), "{ran:?}");

    let ran = shell.run(&["logout"]).await.ok();
    assert!(ran.stdout.contains("Logged out"), "{ran:?}");
    assert!(!credentials.exists());
    let ran = shell.run(&["whoami"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(
        ran.stderr.contains(&format!("not logged in to {}: run `attune login --url {}`", app.url, app.url)),
        "{ran:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_installs_a_pack_from_a_directory_and_runs_its_action_with_wait() {
    let app = TestApp::spawn_pipeline().await;
    let ada = app.register("ada").await;
    let shell = Shell::new();
    shell.login(&app, &ada).await;
    let work = tempfile::tempdir().unwrap();
    let pack = demo_pack(work.path(), "Hello");

    let ran = shell.run(&["pack", "install", pack.to_str().unwrap()]).await.ok();
    assert!(ran.stdout.contains("Pack demo 1.0.0 installed"), "{ran:?}");
    assert!(
        ran.stdout.contains("demo.greet") && ran.stdout.contains("/api/v1/webhooks/"),
        "lists what it installed: {ran:?}"
    );
    let packs = shell.run(&["pack", "list", "-o", "json"]).await.ok().json();
    assert!(packs.as_array().unwrap().iter().any(|p| p["ref"] == "demo" && p["system"] == false), "{packs}");

    // --wait, --output json: the finished execution, parsed.
    let ran = shell.run(&["action", "run", "demo.greet", "name=Ada", "times=2", "--wait", "-o", "json"]).await.ok();
    let execution = ran.json();
    assert_eq!(execution["status"], "succeeded", "{execution}");
    assert_eq!(execution["result"]["output"], serde_json::json!({"greeted": "Ada", "times": 2}));
    assert_eq!(execution["result"]["stdout"], "Hello, Ada!\nHello, Ada!\n{\"greeted\": \"Ada\", \"times\": 2}\n");
    // The table form: a record with the output.
    let ran = shell.run(&["action", "run", "demo.greet", "name=Grace", "--wait"]).await.ok();
    assert!(
        ran.stdout.contains("status:") && ran.stdout.contains("succeeded") && ran.stdout.contains("Hello, Grace!"),
        "{ran:?}"
    );

    // A waited execution that fails: exit code 1, and the failure shown.
    let ran = shell.run(&["action", "run", "core.fail", "message=boom", "--wait"]).await;
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stdout.contains("failed") && ran.stdout.contains("boom"), "{ran:?}");
    assert!(ran.stderr.contains("ended failed"), "{ran:?}");

    // Bad parameters: typed locally (2), checked by the API (3, the parameter named).
    let ran = shell.run(&["action", "run", "demo.greet", "name=Ada", "times=many"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("parameter times: \"many\" is not of type integer"), "{ran:?}");
    let ran = shell.run(&["action", "run", "demo.greet"]).await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stderr.contains("HTTP 422") && ran.stderr.contains("missing required parameter: name"), "{ran:?}");

    // Without --wait: the execution's id, to follow later.
    let created = shell.run(&["action", "run", "demo.greet", "name=Lin", "-o", "json"]).await.ok().json();
    let id = created["id"].as_i64().unwrap();
    let finished = app.finished_execution(&ada, id).await;
    assert_eq!(finished["status"], "succeeded");
    let listed =
        shell.run(&["execution", "list", "--action", "demo.greet", "--since", "10m", "-o", "json"]).await.ok().json();
    assert!(listed.as_array().unwrap().iter().any(|e| e["id"] == id), "{listed}");
    let shown = shell.run(&["execution", "show", &id.to_string()]).await.ok();
    assert!(shown.stdout.contains("Hello, Lin!"), "{shown:?}");

    // Installing the edited directory again updates the pack (a new version).
    let pack = demo_pack(work.path(), "Welcome");
    let ran = shell.run(&["pack", "install", pack.to_str().unwrap()]).await.ok();
    assert!(ran.stdout.contains("Pack demo 1.0.0 updated"), "{ran:?}");
    let execution = shell.run(&["action", "run", "demo.greet", "name=Ada", "--wait", "-o", "json"]).await.ok().json();
    assert_eq!(execution["result"]["stdout"].as_str().unwrap().lines().next(), Some("Welcome, Ada!"));

    // The webhook trigger, fired as an outside system would: its rule runs the action.
    let ran =
        shell.run(&["trigger", "fire", "demo.signup", "--data", r#"{"user": "Hopper"}"#, "-o", "json"]).await.ok();
    let event_id = ran.json()["event_id"].as_i64().unwrap();
    assert!(event_id > 0);
    let by_rule = eventually("the rule's execution", Duration::from_secs(30), || async {
        let listed = shell.run(&["execution", "list", "--rule", "demo.greet_signups", "-o", "json"]).await.ok().json();
        listed.as_array().unwrap().iter().find(|e| e["status"] == "succeeded").cloned()
    })
    .await;
    assert_eq!(by_rule["parameters"]["name"], "Hopper");

    // A directory that is no pack, and a pack the server refuses, are named.
    let ran = shell.run(&["pack", "install", work.path().to_str().unwrap()]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("has no pack.yaml"), "{ran:?}");
    let bad = write_pack(
        work.path(),
        "bad",
        &[
            ("pack.yaml", "ref: bad\nversion: 1.0.0\n", false),
            ("actions/a.yaml", "name: a\nrunner_type: cobol\n", false),
            ("actions/b.yaml", "name: b\nrunner_type: shell\n", false),
        ],
    );
    let ran = shell.run(&["pack", "install", bad.to_str().unwrap()]).await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(
        ran.stderr.contains("\n  - actions/a.yaml: runner_type: unknown runner_type \"cobol\""),
        "one problem a line: {ran:?}"
    );

    let ran = shell.run(&["pack", "remove", "demo", "--yes"]).await.ok();
    assert!(ran.stdout.contains("Removed pack demo"), "{ran:?}");
    let ran = shell.run(&["action", "show", "demo.greet"]).await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stderr.contains("no action \"demo.greet\""), "{ran:?}");

    // A .tar.gz made by hand is uploaded as it is.
    let archive = work.path().join("demo.tar.gz");
    let tar = std::process::Command::new("tar")
        .arg("czf")
        .arg(&archive)
        .arg("-C")
        .arg(work.path())
        .arg("demo")
        .status()
        .unwrap();
    assert!(tar.success());
    let ran = shell.run(&["pack", "upload", archive.to_str().unwrap()]).await.ok();
    assert!(ran.stdout.contains("Pack demo 1.0.0 installed"), "{ran:?}");

    // A canceled execution is not a success either: `watch` exits with 1.
    let created = shell.run(&["action", "run", "core.sleep", "seconds=60", "-o", "json"]).await.ok().json();
    let id = created["id"].as_i64().unwrap().to_string();
    shell.run(&["execution", "cancel", &id]).await.ok();
    let ran = shell.run(&["execution", "watch", &id]).await;
    assert_eq!(ran.code, 1, "{ran:?}");
    assert!(ran.stderr.contains(&format!("execution {id} (core.sleep) ended canceled")), "{ran:?}");
    let ran = shell.run(&["execution", "cancel", &id]).await;
    assert_eq!(ran.code, 3, "an ended execution cannot be canceled: {ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watches_a_workflow_to_completion_over_the_stream() {
    let app = TestApp::spawn_streaming().await;
    let ada = app.register("ada").await;
    let shell = Shell::new();
    shell.login(&app, &ada).await;
    let work = tempfile::tempdir().unwrap();
    shell.run(&["pack", "install", demo_pack(work.path(), "Hello").to_str().unwrap()]).await.ok();

    let ran = shell.run(&["action", "run", "demo.onboard", "name=Ada", "--watch"]).await.ok();
    // Off a terminal the progress is one line per change, each task in turn, on stderr.
    assert!(!ran.stderr.contains("polling"), "the stream is used: {ran:?}");
    let at = |needle: &str| ran.stderr.find(needle).unwrap_or_else(|| panic!("no {needle:?} in {ran:?}"));
    assert!(at("welcome (demo.greet)") < at("pause (core.sleep)"), "{ran:?}");
    assert!(at("pause (core.sleep)") < at("follow_up (demo.greet)"), "{ran:?}");
    assert!(ran.stderr.contains("follow_up (demo.greet)") && ran.stderr.lines().last().unwrap().contains("succeeded"));
    // The result on stdout: the workflow's output and its tasks.
    assert!(ran.stdout.contains("\"greeted\": \"Ada\""), "{ran:?}");
    for task in ["welcome", "pause", "follow_up"] {
        assert!(ran.stdout.lines().any(|l| l.contains(task) && l.contains("succeeded")), "{task}: {ran:?}");
    }

    // -o json: the execution with its children.
    let ran = shell.run(&["action", "run", "demo.onboard", "name=Lin", "--watch", "-o", "json"]).await.ok();
    let execution = ran.json();
    assert_eq!(execution["status"], "succeeded");
    assert_eq!(execution["result"]["output"]["greeted"], "Lin");
    let tasks: Vec<&str> =
        execution["children"].as_array().unwrap().iter().map(|c| c["workflow_task"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["welcome", "pause", "follow_up"]);

    // `execution tail ID`: each task's output as it ends.
    let id = execution["id"].as_i64().unwrap().to_string();
    let ran = shell.run(&["execution", "tail", &id]).await.ok();
    assert!(
        ran.stdout.contains("follow_up (demo.greet)") && ran.stdout.contains("Hello, Lin!\nHello, Lin!"),
        "{ran:?}"
    );
    let ran = shell.run(&["execution", "children", &id]).await.ok();
    assert_eq!(ran.stdout.lines().count(), 4, "a header and three tasks: {ran:?}");

    // Ctrl-C stops the watching, not the execution.
    let created = shell.run(&["action", "run", "core.sleep", "seconds=30", "-o", "json"]).await.ok().json();
    let id = created["id"].as_i64().unwrap();
    let mut watching = shell.command(&["execution", "watch", &id.to_string()]).spawn().unwrap();
    let mut stderr = watching.stderr.take().unwrap();
    let mut seen = Vec::new();
    // Interrupt once it shows the execution running.
    while !String::from_utf8_lossy(&seen).contains("running") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(COMMAND_LIMIT, tokio::io::AsyncReadExt::read(&mut stderr, &mut chunk))
            .await
            .expect("watch shows progress")
            .unwrap();
        assert!(n > 0, "watch ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    let pid = nix::unistd::Pid::from_raw(watching.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = tokio::time::timeout(COMMAND_LIMIT, watching.wait()).await.unwrap().unwrap();
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut rest).await.unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains(&format!("stopped watching execution {id}; it goes on")), "{rest}");
    let still = app.get(&ada, &format!("/api/v1/executions/{id}")).await;
    assert_eq!(still.body["status"], "running", "the execution goes on: {:?}", still.body);
    app.post(&ada, &format!("/api/v1/executions/{id}/cancel"), serde_json::json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watch_polls_where_there_is_no_stream() {
    // The API without the notifier: /ws answers 404.
    let app = TestApp::spawn_pipeline().await;
    let ada = app.register("ada").await;
    let shell = Shell::new();
    shell.login(&app, &ada).await;
    let work = tempfile::tempdir().unwrap();
    shell.run(&["pack", "install", demo_pack(work.path(), "Hello").to_str().unwrap()]).await.ok();

    let created = shell.run(&["action", "run", "demo.onboard", "name=Ada", "-o", "json"]).await.ok().json();
    let id = created["id"].as_i64().unwrap().to_string();
    let ran = shell.run(&["execution", "watch", &id]).await.ok();
    assert!(ran.stderr.contains("live updates unavailable") && ran.stderr.contains("polling"), "{ran:?}");
    assert!(ran.stderr.contains("follow_up (demo.greet)"), "{ran:?}");
    assert!(ran.stdout.contains("\"greeted\": \"Ada\""), "{ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_responds_to_an_inquiry_while_another_cli_waits_on_it() {
    let app = TestApp::spawn_pipeline().await;
    let ada = app.register("ada").await;
    let shell = Shell::new();
    shell.login(&app, &ada).await;

    // One terminal runs core.ask and waits; another answers.
    let schema = r#"schema={"approved": {"type": "boolean", "required": true}}"#;
    let waiting = shell
        .command(&["action", "run", "core.ask", "prompt=Deploy v2?", schema, "--wait", "-o", "json"])
        .spawn()
        .unwrap();
    let inquiry = eventually("the inquiry", Duration::from_secs(30), || async {
        let pending = shell.run(&["inquiry", "list", "-o", "json"]).await.ok().json();
        pending.as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(inquiry["prompt"], "Deploy v2?");
    let id = inquiry["id"].as_i64().unwrap().to_string();
    let shown = shell.run(&["inquiry", "show", &id]).await.ok();
    assert!(shown.stdout.contains("Deploy v2?") && shown.stdout.contains("pending"), "{shown:?}");

    // Typed by the inquiry's schema: "maybe" is no boolean (refused before sending).
    let ran = shell.run(&["inquiry", "respond", &id, "approved=maybe"]).await;
    assert_eq!(ran.code, 2, "{ran:?}");
    assert!(ran.stderr.contains("field approved: \"maybe\" is not of type boolean"), "{ran:?}");
    let ran = shell.run(&["inquiry", "respond", &id, "approved=true"]).await.ok();
    assert!(ran.stdout.contains(&format!("Inquiry {id} answered with {{\"approved\":true}}")), "{ran:?}");
    let ran = shell.run(&["inquiry", "respond", &id, "approved=false"]).await;
    assert_eq!(ran.code, 3, "an answered inquiry takes no other: {ran:?}");
    assert!(ran.stderr.contains("takes no answer any more"), "{ran:?}");

    let out = tokio::time::timeout(COMMAND_LIMIT, waiting.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let execution: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(execution["status"], "succeeded");
    assert_eq!(execution["result"]["output"], serde_json::json!({"approved": true}));
    let answered = shell.run(&["inquiry", "list", "--status", "responded", "-o", "json"]).await.ok().json();
    assert_eq!(answered[0]["responded_by_login"], "ada");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keys_store_encrypted_values_and_show_them_only_to_who_may_see_them() {
    let app = TestApp::spawn().await;
    let ada = app.register("ada").await;
    let admin = Shell::new();
    admin.login(&app, &ada).await;

    let ran = admin.run(&["key", "set", "slack_token", "xoxb-s3cret", "--encrypt"]).await.ok();
    assert!(ran.stdout.contains("Set slack_token (tenant, encrypted)"), "{ran:?}");
    admin.run(&["key", "set", "threshold", "10", "--json", "--ttl", "3600"]).await.ok();

    // At rest: ciphertext only.
    let (value, ciphertext): (Option<Value>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT value, ciphertext FROM attune.datastore_item WHERE key = 'slack_token'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(value, None);
    let ciphertext = ciphertext.expect("stored as ciphertext");
    assert!(!ciphertext.windows(11).any(|w| w == b"xoxb-s3cret"), "the value is not in the ciphertext");

    // The admin reads the plaintext; the bare value, for scripts.
    assert_eq!(admin.run(&["key", "get", "slack_token"]).await.ok().stdout, "xoxb-s3cret\n");
    assert_eq!(admin.run(&["key", "get", "threshold", "-o", "json"]).await.ok().json()["value"], 10);
    let listed = admin.run(&["key", "list"]).await.ok();
    let row = listed.stdout.lines().find(|l| l.starts_with("slack_token")).unwrap().to_string();
    assert!(row.contains("********") && row.contains("yes") && !row.contains("s3cret"), "{listed:?}");
    let decrypted = admin.run(&["key", "list", "--decrypt", "-o", "json"]).await.ok().json();
    assert_eq!(decrypted[0]["key"], "slack_token");
    assert_eq!(decrypted[0]["value"], "xoxb-s3cret");

    // A viewer (added with the CLI, logged in under a second profile) sees the mask.
    let ran = admin
        .run_with_stdin(&["user", "add", "vic", "--role", "viewer", "--password-stdin"], &format!("{PASSWORD}\n"))
        .await
        .ok();
    assert!(ran.stdout.contains("Added user vic (viewer)"), "{ran:?}");
    admin
        .run_with_stdin(
            &["login", "--url", &app.url, "--user", "vic", "--password-stdin", "--profile", "viewer"],
            &format!("{PASSWORD}\n"),
        )
        .await
        .ok();
    assert_eq!(admin.run(&["key", "get", "slack_token", "--profile", "viewer"]).await.ok().stdout, "********\n");
    let ran = admin.run(&["key", "set", "x", "1", "--profile", "viewer"]).await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stderr.contains("HTTP 403") && ran.stderr.contains("attune whoami"), "{ran:?}");
    // The last login made "viewer" the current profile; --profile default is ada again.
    assert_eq!(admin.run(&["whoami", "-o", "json"]).await.ok().json()["user"]["login"], "vic");
    let ran = admin.run(&["key", "delete", "slack_token", "--profile", "default"]).await.ok();
    assert!(ran.stdout.contains("Deleted slack_token"), "{ran:?}");
    let ran = admin.run(&["key", "get", "slack_token", "--profile", "default"]).await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(ran.stderr.contains("no datastore item \"slack_token\""), "{ran:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_help_groups_server_and_client_commands_and_completions_generate() {
    let shell = Shell::new();
    let help = shell.run(&["--help"]).await.ok().stdout;
    let server = help.find("Server commands").expect("a server group");
    let client = help.find("Client commands").expect("a client group");
    let line = |name: &str| help.find(&format!("\n  {name} ")).unwrap_or_else(|| panic!("{name} listed: {help}"));
    for name in ["up", "serve", "migrate", "keys"] {
        assert!(line(name) > server && line(name) < client, "{name} is a server command: {help}");
    }
    for name in ["login", "pack", "action", "execution", "inquiry", "key", "completions"] {
        assert!(line(name) > client, "{name} is a client command: {help}");
    }
    for shell_name in ["bash", "zsh", "fish"] {
        let script = shell.run(&["completions", shell_name]).await.ok().stdout;
        assert!(script.contains("execution") && script.contains("inquiry"), "{shell_name}: {script}");
    }
}
