//! Custom sensors (T3.6): a pack's sensor process turns its JSON lines into events, one
//! process per sensor however many sensor services run, stopped when its rules are.

use std::time::Duration;

use attune_tests::{eventually, TestApp};
use serde_json::{json, Value};

const SENSOR: &str = r#"import json, sys, time
cfg = json.load(sys.stdin)
print("sensor starting, poll", cfg["poll_interval"], file=sys.stderr, flush=True)
n = 0
while True:
    n += 1
    print(json.dumps({"n": n, "greeting": cfg["config"]["greeting"]}), flush=True)
    print("not json")
    time.sleep(0.2)
"#;

fn write_pack(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("sensors")).unwrap();
    std::fs::create_dir_all(dir.join("triggers")).unwrap();
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(dir.join("pack.yaml"), "ref: watch\nversion: 1.0.0\n").unwrap();
    std::fs::write(dir.join("triggers/seen.yaml"), "name: seen\ntype: custom\n").unwrap();
    std::fs::write(dir.join("sensors/counter.py"), SENSOR).unwrap();
    std::fs::write(
        dir.join("sensors/counter.yaml"),
        "name: counter\nrunner_type: python\nentry_point: counter.py\npoll_interval: 2\ntrigger: watch.seen\nconfig: {greeting: hello}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules/on_seen.yaml"),
        "name: on_seen\ntrigger: watch.seen\naction: core.echo\naction_params: {message: \"{{ trigger.data.greeting }} {{ trigger.data.n }}\"}\n",
    )
    .unwrap();
}

async fn payloads(app: &TestApp) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM attune.event WHERE source = 'sensor' ORDER BY id")
        .fetch_all(app.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn t3_6_sensor_lines_become_events_once_and_stop_with_their_rules() {
    let app = TestApp::spawn_pipeline().await;
    // Two sensor services: still one process per sensor.
    app.start_sensor();
    app.start_sensor();
    let u = app.register("watcher").await;
    let dir = tempfile::tempdir().unwrap();
    write_pack(&dir.path().join("watch"));
    let loaded = app.post(&u, "/api/v1/packs", json!({"path": dir.path().join("watch")})).await;
    assert_eq!(loaded.status, 201, "{:?}", loaded.body);

    let events = eventually("5 sensor events", Duration::from_secs(20), || async {
        let p = payloads(&app).await;
        (p.len() >= 5).then_some(p)
    })
    .await;
    assert_eq!(events[0]["greeting"], "hello", "the sensor got its config on stdin");
    let ns: Vec<i64> = events.iter().map(|p| p["n"].as_i64().unwrap()).collect();
    let mut unique = ns.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ns.len(), "one process only: no value twice: {ns:?}");
    let ran = eventually("an execution from a sensor event", Duration::from_secs(20), || async {
        let e = app.get(&u, "/api/v1/executions?rule=watch.on_seen&status=succeeded").await;
        (e.body["total"].as_i64().unwrap() > 0).then_some(e.body)
    })
    .await;
    assert_eq!(ran["data"][0]["action_ref"], "core.echo");
    let lease_holders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM attune.sensor_lease").fetch_one(app.pool()).await.unwrap();
    assert_eq!(lease_holders, 1);

    // Disable its only rule: the process stops, no more events.
    let rule = app.get(&u, "/api/v1/rules/ref/watch.on_seen").await.body["id"].as_i64().unwrap();
    assert_eq!(app.patch(&u, &format!("/api/v1/rules/{rule}"), json!({"enabled": false})).await.status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = payloads(&app).await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(payloads(&app).await.len(), settled, "the sensor stopped with its last rule");
    let leases: i64 =
        sqlx::query_scalar("SELECT count(*) FROM attune.sensor_lease").fetch_one(app.pool()).await.unwrap();
    assert_eq!(leases, 0, "its lease was released");
}

#[tokio::test]
async fn a_dying_sensor_is_restarted_with_backoff_and_stops_with_its_pack() {
    let app = TestApp::spawn_pipeline().await;
    app.start_sensor();
    let u = app.register("flaky").await;
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("watch");
    write_pack(&pack);
    // This one says one thing and dies.
    std::fs::write(
        pack.join("sensors/counter.py"),
        "import json, sys\nprint(json.dumps({'n': 1, 'greeting': 'again'}), flush=True)\nsys.exit(3)\n",
    )
    .unwrap();
    let loaded = app.post(&u, "/api/v1/packs", json!({"path": pack})).await;
    assert_eq!(loaded.status, 201, "{:?}", loaded.body);
    let started = std::time::Instant::now();
    eventually("three runs of the dying sensor", Duration::from_secs(20), || async {
        (payloads(&app).await.len() >= 3).then_some(())
    })
    .await;
    // Backoff 1 s, then 2 s: three runs take at least ~3 s.
    assert!(started.elapsed() >= Duration::from_millis(2500), "restarted with a growing backoff, not in a tight loop");

    let pack_id = loaded.body["id"].as_i64().unwrap();
    let deleted = app.delete(&u, &format!("/api/v1/packs/{pack_id}")).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = payloads(&app).await.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(payloads(&app).await.len(), settled, "no sensor runs for a removed pack");
}
