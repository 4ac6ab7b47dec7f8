//! Secrets never leak (T3.20): an action's secrets — a sealed `secret: true` parameter and
//! a declared datastore secret — reach it on stdin and nowhere else. Not in any process's
//! environment or command line while it runs, not in what is stored of its run (the
//! execution, its output, its attempts, the audit and change logs: every table), not in
//! the API's answer, not in the services' logs; what the action prints of them is stored
//! as `********`, even when one write prints half of a secret and the next the rest.
//!
//! The worker and the executor run as `attune` processes here, so their logs (at debug
//! level) can be searched too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_tests::processes::{ServiceProcess, Spec};
use attune_tests::{eventually, TestApp, User};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::json;
use sha2::{Digest, Sha256};

/// The action: reads its stdin document, proves it got both secrets (their sha256), then
/// prints them, whole and split across two writes, on stdout and stderr, and inside its
/// JSON output line; then sleeps (a `sleep` the test finds by its length, `MARKER`) so
/// the test can search every process while it runs, and fails (so stderr's tail becomes
/// the `error`). Only shell builtins and programs reading stdin ever hold a secret: the
/// action itself never puts one on a command line.
const ACTION: &str = r#"doc=$(cat)
key=$(printf '%s' "$doc" | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
password=$(printf '%s' "$doc" | sed -n 's/.*"password":"\([^"]*\)".*/\1/p')
for v in "$key" "$password"; do
  first=$(printf '%s' "$v" | cut -c1-9)
  rest=$(printf '%s' "$v" | cut -c10-)
  printf 'whole:%s\n' "$v"; printf 'whole:%s\n' "$v" >&2
  printf 'split:%s' "$first"; printf 'split:%s' "$first" >&2
  sleep 0.2
  printf '%s\n' "$rest"; printf '%s\n' "$rest" >&2
done
key_sha=$(printf '%s' "$key" | sha256sum | cut -c1-64)
password_sha=$(printf '%s' "$password" | sha256sum | cut -c1-64)
printf '{"key":"%s","password":"%s","key_sha256":"%s","password_sha256":"%s"}\n' \
  "$key" "$password" "$key_sha" "$password_sha"
sleep MARKER
printf 'last words:%s\n' "$key" >&2
exit 3
"#;

fn random(n: usize) -> String {
    rand::thread_rng().sample_iter(Alphanumeric).take(n).map(char::from).collect()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// An `attune serve <service>` process on the app's database, logging at debug level.
fn service(app: &TestApp, service: &str) -> ServiceProcess {
    let mut env: HashMap<String, String> = app.process_env();
    env.insert("RUST_LOG".into(), "debug,sqlx=warn,hyper=info,h2=info,rustls=info".into());
    let mut process =
        ServiceProcess::start(&Spec { args: vec!["serve".into(), service.into()], env, as_pid_one: false });
    process.wait_for_log("starting", Duration::from_secs(60));
    process
}

/// The places (pid and file) among every readable `/proc/<pid>/environ` and `cmdline`
/// that hold one of `secrets`.
fn processes_holding(secrets: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        for file in ["environ", "cmdline"] {
            let Ok(raw) = std::fs::read(entry.path().join(file)) else { continue };
            if secrets.iter().any(|s| raw.windows(s.len()).any(|w| w == s.as_bytes())) {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                let name: String = String::from_utf8_lossy(&cmdline).replace('\0', " ").chars().take(80).collect();
                found.push(format!("{}/{file} ({name})", entry.path().display()));
            }
        }
    }
    found
}

/// True when a process runs whose command line starts with `prefix`.
fn running(prefix: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").starts_with(prefix))
    })
}

/// Searches every process, over and over, until stopped: what it found, how often it
/// looked, and how often while a process starting with `during` ran (the action's own).
struct ProcessWatch {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    rounds_during: Arc<AtomicUsize>,
    found: Arc<Mutex<Vec<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProcessWatch {
    fn start(secrets: Vec<String>, during: String) -> ProcessWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let rounds_during = Arc::new(AtomicUsize::new(0));
        let found = Arc::new(Mutex::new(Vec::new()));
        let (s, r, d, f) = (stop.clone(), rounds.clone(), rounds_during.clone(), found.clone());
        let thread = std::thread::spawn(move || {
            let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
            while !s.load(Ordering::Relaxed) {
                let before = running(&during);
                let holding = processes_holding(&secrets);
                f.lock().unwrap().extend(holding);
                r.fetch_add(1, Ordering::Relaxed);
                if before && running(&during) {
                    d.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        ProcessWatch { stop, rounds, rounds_during, found, thread: Some(thread) }
    }

    /// Stops it: how many rounds it made (all, and whole rounds while the action ran),
    /// and what it found.
    fn finish(mut self) -> (usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let mut found = self.found.lock().unwrap().clone();
        found.dedup();
        (self.rounds.load(Ordering::Relaxed), self.rounds_during.load(Ordering::Relaxed), found)
    }
}

/// The rows of `table` (schema `attune`), each as text, one a line.
async fn table_text(app: &TestApp, table: &str) -> String {
    let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM attune.{table} t");
    sqlx::query_scalar(&sql).fetch_one(app.pool()).await.unwrap()
}

/// Every place of `texts` (place, text) that holds one of `secrets`.
fn leaks<'a>(texts: &'a [(String, String)], secrets: &[&str]) -> Vec<&'a str> {
    texts.iter().filter(|(_, text)| secrets.iter().any(|s| text.contains(s))).map(|(place, _)| place.as_str()).collect()
}

async fn setup(app: &TestApp, key_value: &str, marker: &str) -> User {
    let u = app.register("keeper").await;
    let put = app.post(&u, "/api/v1/datastore", json!({"key": "api_key", "value": key_value, "encrypted": true})).await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "vault", "version": "1"})).await.status, 201);
    let action = json!({
        "ref": "vault.use", "runner_type": "shell", "command": ACTION.replace("MARKER", marker),
        "secrets": ["api_key"],
        "parameters": {"password": {"type": "string", "secret": true, "required": true}},
    });
    let created = app.post(&u, "/api/v1/actions", action).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    u
}

#[tokio::test]
async fn t3_20_secrets_reach_the_action_only_on_stdin() {
    let app = TestApp::spawn().await;
    let key_value = format!("secret123-{}", random(16));
    let password = format!("pw-{}", random(20));
    let secrets = [key_value.as_str(), password.as_str()];
    // `sleep 2.<7 digits>`: about 2 s, and a length no other process has.
    let marker = format!("2.{:07}", rand::thread_rng().gen_range(0..10_000_000));
    let u = setup(&app, &key_value, &marker).await;
    let executor = service(&app, "executor");
    let worker = service(&app, "worker");
    let watch = ProcessWatch::start(secrets.iter().map(|s| s.to_string()).collect(), format!("sleep {marker}"));

    let run =
        app.post(&u, "/api/v1/executions", json!({"action": "vault.use", "parameters": {"password": password}})).await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    assert!(leaks(&[("the answer to the request".into(), run.body.to_string())], &secrets).is_empty());
    let id = run.body["id"].as_i64().unwrap();

    // While the action runs (its last `sleep`, after it printed everything): one more
    // search of every process, beside the watch's.
    eventually("the action's last sleep", Duration::from_secs(60), || async {
        running(&format!("sleep {marker}")).then_some(())
    })
    .await;
    let while_running = processes_holding(&secrets);
    let ex = app.finished_execution(&u, id).await;
    let (rounds, rounds_during, found) = watch.finish();
    assert!(while_running.is_empty(), "processes holding a secret while the action ran: {while_running:?}");
    assert!(found.is_empty(), "processes holding a secret during the run: {found:?}");
    // How often it can look depends on the machine's load (a round reads every process's
    // environment): it must have looked often, and whole rounds while the action's last
    // step ran.
    assert!(
        rounds >= 5 && rounds_during >= 1,
        "the process watch looked {rounds} times, {rounds_during} during the run"
    );

    // The action got both values: it printed their sha256.
    let result = &ex["result"];
    assert_eq!(result["output"]["key_sha256"], sha256_hex(&key_value), "{ex}");
    assert_eq!(result["output"]["password_sha256"], sha256_hex(&password), "{ex}");

    // Nowhere stored, answered or logged: every place is searched before any is judged,
    // so a failure names them all.
    let mut places = vec![
        ("GET /api/v1/executions/{id}".to_string(), ex.to_string()),
        ("the worker's log".to_string(), worker.stderr()),
        ("the executor's log".to_string(), executor.stderr()),
    ];
    for (place, sql) in [
        ("the execution row", "SELECT e::text FROM attune.execution e WHERE e.id = $1"),
        ("its output row", "SELECT o::text FROM attune.execution_output o WHERE o.execution_id = $1"),
        (
            "its attempt rows",
            "SELECT string_agg(a::text, E'\\n') FROM attune.execution_attempt a WHERE a.execution_id = $1",
        ),
        (
            "its audit entries",
            "SELECT string_agg(a::text, E'\\n') FROM attune.audit_log a WHERE a.entity_id = ($1::bigint)::text",
        ),
    ] {
        let text: Option<String> = sqlx::query_scalar(sql).bind(id).fetch_one(app.pool()).await.unwrap();
        let text = text.unwrap_or_default();
        assert!(!text.is_empty(), "{place}: no rows");
        places.push((place.to_string(), text));
    }
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'attune' ORDER BY 1")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert!(tables.iter().any(|t| t == "audit_log") && tables.iter().any(|t| t == "change_log"), "{tables:?}");
    for table in tables {
        let text = table_text(&app, &table).await;
        places.push((format!("table attune.{table}"), text));
    }
    assert!(worker.stderr().contains("worker registered"), "the worker's log is captured");
    let leaked = leaks(&places, &secrets);
    assert!(leaked.is_empty(), "a secret is in: {leaked:?}");
    assert!(places[3].1.contains("********"), "the stored row shows the mask: {}", places[3].1);
    assert!(places[4].1.contains("split:********"), "the stored output shows the mask: {}", places[4].1);

    // What it printed of them is stored masked: whole, split across writes, in JSON.
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(result["exit_code"], 3, "{ex}");
    assert_eq!(ex["parameters"]["password"], "********", "{ex}");
    let printed = "whole:********\nsplit:********\n".repeat(2);
    let output_line = format!(
        r#"{{"key":"********","password":"********","key_sha256":"{}","password_sha256":"{}"}}"#,
        sha256_hex(&key_value),
        sha256_hex(&password)
    );
    assert_eq!(result["stdout"], format!("{printed}{output_line}\n"), "{ex}");
    assert_eq!(result["stderr"], format!("{printed}last words:********\n"), "{ex}");
    assert_eq!(result["error"], format!("{printed}last words:********"), "{ex}");
    assert_eq!(result["output"]["key"], "********", "{ex}");
    assert_eq!(result["output"]["password"], "********", "{ex}");
}
