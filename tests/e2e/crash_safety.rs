//! Crash safety: workers and executors as real processes, SIGKILLed and restarted — under
//! their old name too, as in a container. Nothing stays `running`, nothing is lost, an
//! action never outlives its worker, and no action runs without its input.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attune_tests::processes::{process_gone, ServiceProcess, Spec};
use attune_tests::{eventually, TestApp, User};
use rand::Rng;
use serde_json::{json, Value};

fn worker_spec(app: &TestApp, as_pid_one: bool) -> Spec {
    Spec { args: vec!["serve".into(), "worker".into()], env: app.process_env(), as_pid_one }
}

fn executor_spec(app: &TestApp) -> Spec {
    Spec { args: vec!["serve".into(), "executor".into()], env: app.process_env(), as_pid_one: false }
}

async fn setup(app: &TestApp, login: &str) -> User {
    let u = app.register(login).await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "c", "version": "1"})).await.status, 201);
    u
}

async fn action(app: &TestApp, u: &User, body: Value) {
    let a = app.post(u, "/api/v1/actions", body.clone()).await;
    assert_eq!(a.status, 201, "{body}: {:?}", a.body);
}

async fn run(app: &TestApp, u: &User, action: &str, parameters: Value) -> i64 {
    let r = app.post(u, "/api/v1/executions", json!({"action": action, "parameters": parameters})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

/// Host pids of the processes whose command line contains `marker` (the shells and
/// `unshare` that started a program carry it in theirs too).
fn pids_with(marker: &str) -> Vec<i32> {
    processes_where(|cmdline| cmdline.contains(marker))
}

/// Host pids of the `sleep` processes whose length contains `marker`.
fn sleepers(marker: &str) -> Vec<i32> {
    processes_where(|cmdline| cmdline.starts_with("sleep ") && cmdline.contains(marker))
}

fn processes_where(matches: impl Fn(&str) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| matches(&String::from_utf8_lossy(&raw).replace('\0', " ")))
                .unwrap_or(false)
        })
        .filter(|pid| !process_gone(*pid))
        .collect()
}

async fn status_of(app: &TestApp, id: i64) -> String {
    sqlx::query_scalar("SELECT status FROM attune.execution WHERE id = $1")
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap()
}

/// The process of execution `id`'s first attempt, once its worker recorded it (within a
/// moment of the start for an attempt still running).
async fn first_attempt_pid(app: &TestApp, id: i64) -> i32 {
    eventually("the attempt's pid to be recorded", Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, Option<i32>>(
            "SELECT pid FROM attune.execution_attempt WHERE execution_id = $1 AND attempt = 1",
        )
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap()
    })
    .await
}

async fn wait_running(app: &TestApp, id: i64) {
    eventually(&format!("execution {id} to run"), Duration::from_secs(30), || async {
        (status_of(app, id).await == "running").then_some(())
    })
    .await;
}

/// A manual run handed to a lane of the API's own process (`attune serve api,worker`) is
/// committed `running` on that worker by the API's statement: when the process is killed
/// while it runs, the reaper moves it on as it would a claimed one — failed `worker_lost`,
/// its attempt closed `lost` — and its action dies with the process.
#[tokio::test]
async fn a_run_handed_within_a_killed_process_is_lost_with_it() {
    let app = TestApp::spawn().await;
    app.start_executor();
    let u = setup(&app, "handy").await;
    let marker = format!("3000.{}", rand::thread_rng().gen_range(100_000..999_999));
    action(&app, &u, json!({"ref": "c.stay", "runner_type": "shell", "command": format!("sleep {marker}")})).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut env = app.process_env();
    env.insert("ATTUNE_API_HOST".into(), "127.0.0.1".into());
    env.insert("ATTUNE_API_PORT".into(), port.to_string());
    let spec = Spec { args: vec!["serve".into(), "api,worker".into()], env, as_pid_one: false };
    let mut both = ServiceProcess::start(&spec);
    both.wait_for_log("worker registered", Duration::from_secs(60));
    // Its lanes are idle once their first claim round found nothing; a poll round may
    // take one out of idleness for a moment: runs are tried until one is handed.
    let mut handed = None;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let res = app
            .http
            .post(format!("http://127.0.0.1:{port}/api/v1/executions"))
            .bearer_auth(&u.token)
            .json(&json!({"action": "c.stay"}))
            .send()
            .await
            .expect("the process's API answers");
        assert_eq!(res.status().as_u16(), 201);
        let id = res.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
        if app.trail(id).await.handed {
            handed = Some(id);
            break;
        }
    }
    let id = handed.expect("none of 10 runs was handed to the process's idle lane");
    // Started by the lane it was handed to: its attempt names its process.
    first_attempt_pid(&app, id).await;

    both.kill();
    let ex = eventually("the handed run to be moved on", Duration::from_secs(10), || async {
        let ex = app.get(&u, &format!("/api/v1/executions/{id}")).await.body;
        (ex["status"] != "running").then_some(ex)
    })
    .await;
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["result"]["failure_reason"], "worker_lost");
    let attempt: String =
        sqlx::query_scalar("SELECT status FROM attune.execution_attempt WHERE execution_id = $1 AND attempt = 1")
            .bind(id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(attempt, "lost");
    eventually("its action process to die", Duration::from_secs(5), || async {
        pids_with(&marker).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_killed_worker_is_lost_within_a_second_and_its_actions_die_with_it() {
    let app = TestApp::spawn().await;
    app.start_executor();
    let u = setup(&app, "crashy").await;
    // A sleeper of its own, and one escaped with setsid: both must die with the worker.
    let marker = format!("3000.{}", rand::thread_rng().gen_range(100_000..999_999));
    let command = format!("setsid sleep {marker}1 & sleep {marker}2");
    action(&app, &u, json!({"ref": "c.linger", "runner_type": "shell", "command": command})).await;
    let mut worker = ServiceProcess::start(&worker_spec(&app, false));
    worker.wait_for_log("worker registered", Duration::from_secs(60));
    let id = run(&app, &u, "c.linger", json!({})).await;
    wait_running(&app, id).await;
    eventually("both sleepers to start", Duration::from_secs(10), || async {
        (sleepers(&marker).len() == 2).then_some(())
    })
    .await;
    let worker_id: i64 = sqlx::query_scalar("SELECT worker_id FROM attune.execution WHERE id = $1")
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap();
    // The attempt's row names its process (a label for operators, written within a
    // moment of the start for an attempt still running): here, the sandbox's outer process.
    let pid = first_attempt_pid(&app, id).await;
    assert!(!process_gone(pid), "pid {pid} is a live process of the worker's");

    worker.kill();
    let killed = Instant::now();
    let lost_after = eventually("the worker to be marked lost", Duration::from_secs(10), || async {
        let status: String = sqlx::query_scalar("SELECT status FROM attune.worker WHERE id = $1")
            .bind(worker_id)
            .fetch_one(app.pool())
            .await
            .unwrap();
        (status == "lost").then(|| killed.elapsed())
    })
    .await;
    eprintln!("a killed worker was marked lost after {lost_after:?}");
    // The reaper looks twice a second; generous for a loaded CI machine.
    assert!(lost_after < Duration::from_secs(3), "lost after {lost_after:?}");
    let gone_after = eventually("the worker's action processes to die", Duration::from_secs(5), || async {
        pids_with(&marker).is_empty().then(|| killed.elapsed())
    })
    .await;
    eprintln!("its action processes were gone after {gone_after:?}");
    assert!(gone_after < Duration::from_secs(2), "gone after {gone_after:?}");

    let ex = app.get(&u, &format!("/api/v1/executions/{id}")).await.body;
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["result"]["failure_reason"], "worker_lost");
    let attempt: (String, i64) = sqlx::query_as(
        "SELECT status, worker_id FROM attune.execution_attempt WHERE execution_id = $1 AND attempt = 1",
    )
    .bind(id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(attempt, ("lost".to_string(), worker_id), "the attempt the worker took with it is recorded");
}

#[tokio::test]
async fn a_worker_restarted_under_its_old_name_does_not_strand_what_it_held() {
    let app = TestApp::spawn().await;
    app.start_executor();
    let u = setup(&app, "container").await;
    // The first attempt hangs; the retry succeeds.
    let command = r#"if grep -q '"attempt":1' ; then sleep 300; fi; echo done"#;
    let body =
        json!({"ref": "c.second_time", "runner_type": "shell", "command": command, "retry": {"max_attempts": 2}});
    action(&app, &u, body).await;
    // PID 1 of its own namespace at every start, as in a container: the same name.
    let spec = worker_spec(&app, true);
    let mut worker = ServiceProcess::start(&spec);
    worker.wait_for_log("worker registered", Duration::from_secs(60));
    let id = run(&app, &u, "c.second_time", json!({})).await;
    wait_running(&app, id).await;

    worker.kill();
    worker.restart();
    worker.wait_for_log("worker registered", Duration::from_secs(60));
    let ex = app.finished_execution(&u, id).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["attempt"], 2);
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, status FROM attune.worker ORDER BY id").fetch_all(app.pool()).await.unwrap();
    assert_eq!(rows.len(), 2, "each start is an incarnation of its own: {rows:?}");
    assert_eq!(rows[0].0, rows[1].0, "under the same name: {rows:?}");
    assert!(rows[0].0.ends_with("/1/1"), "{rows:?}");
    assert_eq!((rows[0].1.as_str(), rows[1].1.as_str()), ("lost", "active"));
    assert_eq!(worker.terminate(Duration::from_secs(30)), Some(0), "{}", worker.stderr());
}

/// The chaos run: two executors and two workers (one restarting under its old name), each
/// SIGKILLed and restarted at random while webhooks pour in.
#[tokio::test]
async fn chaos_killed_and_restarted_services_lose_nothing_and_run_nothing_without_input() {
    const EVENTS: usize = 240;
    const MAX_ATTEMPTS: i64 = 6;
    let app = TestApp::spawn().await;
    let u = setup(&app, "chaos").await;
    // The actions' log: a host folder the sandbox binds read-write, writable by their user.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let dir_path = dir.path().to_string_lossy().to_string();
    // The sleep's length (about 0.3 s) tells its processes apart from any other.
    let marker = format!("0.3{}", rand::thread_rng().gen_range(100_000..999_999));
    // Its side effect is a line at its start and one at its end; an action that found no
    // complete input document says so.
    let command = format!(
        r#"doc=$(cat); case "$doc" in *'"n":'*) ;; *) echo "EMPTY $ATTUNE_EXECUTION_ID" >> "$ATTUNE_PARAM_DIR/empty";; esac
echo "start $ATTUNE_EXECUTION_ID" >> "$ATTUNE_PARAM_DIR/log"
sleep {marker}
echo "end $ATTUNE_EXECUTION_ID" >> "$ATTUNE_PARAM_DIR/log""#
    );
    let body = json!({"ref": "c.effect", "runner_type": "shell", "command": command,
                      "parameters": {"n": {"type": "integer", "required": true}, "dir": {"type": "string"}},
                      "retry": {"max_attempts": MAX_ATTEMPTS}});
    action(&app, &u, body).await;
    let hook = app.post(&u, "/api/v1/triggers", json!({"ref": "c.hook", "type": "webhook"})).await;
    let url = hook.body["webhook_url"].as_str().unwrap().to_string();
    let rule = json!({"ref": "c.on_hook", "trigger": "c.hook", "action": "c.effect",
                      "action_params": {"n": "{{ trigger.data.n }}", "dir": dir_path}});
    assert_eq!(app.post(&u, "/api/v1/rules", rule).await.status, 201);

    let mut specs = [executor_spec(&app), executor_spec(&app), worker_spec(&app, false), worker_spec(&app, true)];
    for spec in &mut specs {
        spec.env.insert("ATTUNE_SANDBOX_BIND".into(), dir_path.clone());
    }
    let processes: Vec<ServiceProcess> = specs.iter().map(ServiceProcess::start).collect();
    let processes = Arc::new(Mutex::new(processes));
    for p in processes.lock().unwrap().iter_mut() {
        p.wait_for_log("starting", Duration::from_secs(60));
    }

    // The killer: every 0.6–1.4 s one process is SIGKILLed, and restarted 0.2–0.8 s later,
    // while the events come in and for a while after; each process in turn (workers
    // first), so every one of them dies at least once.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (processes, stop) = (processes.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut rng = rand::thread_rng();
            let mut kills = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(rng.gen_range(600..1400)));
                let victim = [2, 0, 3, 1][kills % 4];
                processes.lock().unwrap()[victim].kill();
                kills += 1;
                std::thread::sleep(Duration::from_millis(rng.gen_range(200..800)));
                processes.lock().unwrap()[victim].restart();
            }
            kills
        })
    };
    for n in 0..EVENTS {
        app.fire(&url, json!({"n": n})).await;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.join().unwrap();
    eprintln!("{kills} processes killed and restarted");
    assert!(kills >= 5, "the chaos killed {kills} processes");

    // Every event becomes exactly one enforcement and one execution, and every execution ends.
    let p = app.pool();
    let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(p).await.unwrap() };
    eventually("every execution to end", Duration::from_secs(120), || async {
        // Both counts from one snapshot: counted apart, an execution created between the
        // two reads was in neither the open ones nor missing from the total.
        let (open, made): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status NOT IN ('succeeded', 'failed', 'canceled')), count(*)
               FROM attune.execution",
        )
        .fetch_one(p)
        .await
        .unwrap();
        (open == 0 && made == EVENTS as i64).then_some(())
    })
    .await;
    assert_eq!(count("SELECT count(*) FROM attune.event").await, EVENTS as i64);
    assert_eq!(count("SELECT count(DISTINCT event_id) FROM attune.enforcement").await, EVENTS as i64);
    assert_eq!(count("SELECT count(*) FROM attune.enforcement").await, EVENTS as i64);

    let rows: Vec<(i64, String, i32, Option<Value>)> =
        sqlx::query_as("SELECT id, status, attempt, result FROM attune.execution").fetch_all(p).await.unwrap();
    let log = std::fs::read_to_string(Path::new(&dir_path).join("log")).unwrap_or_default();
    let mut starts: HashMap<String, i64> = HashMap::new();
    let mut ends: HashMap<String, i64> = HashMap::new();
    for line in log.lines() {
        match line.split_once(' ') {
            Some(("start", id)) => *starts.entry(id.to_string()).or_default() += 1,
            Some(("end", id)) => *ends.entry(id.to_string()).or_default() += 1,
            _ => panic!("a torn log line: {line:?}"),
        }
    }
    let mut lost = 0;
    for (id, status, attempt, result) in &rows {
        let id = id.to_string();
        let (s, e) = (starts.get(&id).copied().unwrap_or(0), ends.get(&id).copied().unwrap_or(0));
        assert!(s <= MAX_ATTEMPTS && s <= *attempt as i64, "execution {id} started {s} times in {attempt} attempts");
        assert!(e <= s, "execution {id}: {e} ends of {s} starts");
        match status.as_str() {
            "succeeded" => assert!(e >= 1, "execution {id} succeeded without its side effect"),
            "failed" => {
                let reason = result.as_ref().and_then(|r| r["failure_reason"].as_str()).unwrap_or_default();
                assert_eq!(reason, "worker_lost", "execution {id} failed: {result:?}");
                lost += 1;
            }
            other => panic!("execution {id} ended {other}"),
        }
    }
    let retried = rows.iter().filter(|r| r.2 > 1).count();
    eprintln!(
        "{} executions: {retried} retried, {lost} failed as worker_lost after {MAX_ATTEMPTS} attempts",
        rows.len()
    );
    assert!(retried > 0, "the chaos killed workers while they ran actions");
    let empty = std::fs::read_to_string(Path::new(&dir_path).join("empty")).unwrap_or_default();
    assert!(empty.is_empty(), "actions ran without their input:\n{empty}");
    eventually("no action process left", Duration::from_secs(5), || async {
        pids_with(&marker).is_empty().then_some(())
    })
    .await;
    let open_attempts = count("SELECT count(*) FROM attune.execution_attempt WHERE status = 'running'").await;
    assert_eq!(open_attempts, 0, "every attempt is closed");
    for p in processes.lock().unwrap().iter_mut() {
        p.kill();
    }
}
