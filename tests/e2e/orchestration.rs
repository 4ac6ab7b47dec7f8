//! The whole loop in one scenario (T3.7): a webhook fires a rule; its workflow checks a
//! threshold kept in the datastore, asks a human when it is exceeded, runs the steps,
//! records the outcome in the datastore and sends a notification that a WebSocket client
//! sees. Real API, executor, worker (python actions in their sandbox) and notifier.

use std::time::{Duration, Instant};

use attune_tests::stream::{Received, Socket};
use attune_tests::{eventually, TestApp, User};
use serde_json::{json, Value};

const CHECK: &str = "from attune import datastore\ndef run(params):\n    limit = datastore.get('alert.threshold')\n    return {'over': params['value'] > limit, 'threshold': limit}\n";
const SCALE: &str = "def run(params):\n    return {'replicas': params['current'] + 2}\n";
const RECORD: &str = "from attune import datastore\ndef run(params):\n    datastore.set('alert.last', {'host': params['host'], 'replicas': params['replicas']})\n    return {'recorded': True}\n";

async fn post(app: &TestApp, u: &User, path: &str, body: Value) -> Value {
    let a = app.post(u, path, body.clone()).await;
    assert!(a.status == 201 || a.status == 200, "{path} {body}: {:?}", a.body);
    a.body
}

/// The workflow execution the rule started for event `event`.
async fn workflow_of(app: &TestApp, event: i64) -> i64 {
    eventually(&format!("the workflow of event {event}"), Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT x.id FROM attune.execution x JOIN attune.enforcement f ON f.id = x.enforcement_id WHERE f.event_id = $1",
        )
        .bind(event)
        .fetch_optional(app.pool())
        .await
        .unwrap()
    })
    .await
}

async fn tasks_run(app: &TestApp, workflow: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT workflow_task FROM attune.execution WHERE parent_id = $1 ORDER BY started_at, id")
        .bind(workflow)
        .fetch_all(app.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn t3_7_webhook_threshold_approval_workflow_datastore_and_notification() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("ops").await;
    post(&app, &u, "/api/v1/packs", json!({"ref": "ops", "version": "1.0.0"})).await;
    post(&app, &u, "/api/v1/datastore", json!({"key": "alert.threshold", "value": 80})).await;
    post(
        &app,
        &u,
        "/api/v1/actions",
        json!({"ref": "ops.check", "runner_type": "python", "code": CHECK,
        "parameters": {"value": {"type": "number", "required": true}}}),
    )
    .await;
    post(
        &app,
        &u,
        "/api/v1/actions",
        json!({"ref": "ops.scale", "runner_type": "python", "code": SCALE,
        "parameters": {"current": {"type": "integer", "required": true}}}),
    )
    .await;
    post(&app, &u, "/api/v1/actions", json!({"ref": "ops.record", "runner_type": "python", "code": RECORD})).await;
    let over = "{{ task_check.result.output.over }}";
    let workflow = json!({
        "input": ["value", "host"],
        "tasks": [
            {"name": "check", "action": "ops.check", "input": {"value": "{{ execution.params.value }}"}},
            {"name": "approve", "action": "core.ask", "depends_on": ["check"], "when": over,
             "input": {"prompt": "{{ execution.params.host }} at {{ execution.params.value }}% (limit {{ task_check.result.output.threshold }}%): scale up?",
                       "schema": {"approved": {"type": "boolean", "required": true}}, "ttl_seconds": 600}},
            {"name": "scale", "action": "ops.scale", "depends_on": ["approve"], "when": over,
             "input": {"current": 3}, "publish": {"replicas": "{{ result.output.replicas }}"}},
            {"name": "record", "action": "ops.record", "depends_on": ["scale"], "when": over,
             "input": {"host": "{{ execution.params.host }}", "replicas": "{{ replicas }}"}},
            {"name": "notify", "action": "core.echo", "depends_on": ["record", "check"],
             "input": {"message": "{{ execution.params.host }}: {{ 'scaled to ' ~ replicas if task_check.result.output.over else 'within limits' }}"}}
        ],
        "output": {"notified": "{{ task_notify.result.output.message }}"}
    });
    post(
        &app,
        &u,
        "/api/v1/actions",
        json!({"ref": "ops.handle", "runner_type": "workflow", "workflow": workflow,
        "parameters": {"value": {"type": "number", "required": true}, "host": {"type": "string", "required": true}}}),
    )
    .await;
    let trigger = post(&app, &u, "/api/v1/triggers", json!({"ref": "ops.cpu_alert", "type": "webhook"})).await;
    post(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "ops.on_alert", "trigger": "ops.cpu_alert", "action": "ops.handle",
        "action_params": {"value": "{{ trigger.data.cpu }}", "host": "{{ trigger.data.host }}"}}),
    )
    .await;
    let hook = trigger["webhook_url"].as_str().unwrap().to_string();

    let mut ws = Socket::connect(&app, Some(&u.token)).await;
    ws.subscribe(json!({"type": "subscribe", "entity_types": ["execution", "inquiry"]})).await;

    // Over the threshold: the workflow waits for an approval, then runs every step.
    let event = app.fire(&hook, json!({"host": "web-1", "cpu": 95})).await;
    let wf = workflow_of(&app, event).await;
    let inquiry = eventually("the approval request", Duration::from_secs(30), || async {
        let page = app.get(&u, "/api/v1/inquiries?status=pending").await;
        page.body["data"].as_array().unwrap().first().cloned()
    })
    .await;
    assert_eq!(inquiry["prompt"], "web-1 at 95% (limit 80%): scale up?");
    eventually("the workflow to pause", Duration::from_secs(30), || async {
        (app.get(&u, &format!("/api/v1/executions/{wf}")).await.body["status"] == "paused").then_some(())
    })
    .await;
    assert_eq!(tasks_run(&app, wf).await, ["check", "approve"], "nothing runs past the approval before it is given");
    let answer = app
        .post(&u, &format!("/api/v1/inquiries/{}/respond", inquiry["id"]), json!({"response": {"approved": true}}))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let done = app.finished_execution(&u, wf).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["output"]["notified"], "web-1: scaled to 5");
    assert_eq!(tasks_run(&app, wf).await, ["check", "approve", "scale", "record", "notify"]);
    let last = app.get(&u, "/api/v1/datastore/alert.last").await;
    assert_eq!(last.body["value"], json!({"host": "web-1", "replicas": 5}), "{:?}", last.body);

    // The notification reached the WebSocket client: the notify task's success, with its message.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut saw_inquiry = false;
    let notified = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(Received::Json(m)) = ws.next_within(left).await else { panic!("no notification on the stream") };
        saw_inquiry |= m["event"] == "inquiry.created";
        let data = &m["data"];
        if data["workflow_task"] == "notify" && data["status"] == "succeeded" {
            break m;
        }
    };
    assert!(saw_inquiry, "the approval request was streamed too");
    assert_eq!(notified["data"]["parent_id"], wf);
    assert_eq!(notified["data"]["result"]["output"]["message"], "web-1: scaled to 5");

    // Within the threshold: no approval, no scaling, still a notification.
    let event = app.fire(&hook, json!({"host": "web-2", "cpu": 40})).await;
    let wf = workflow_of(&app, event).await;
    let done = app.finished_execution(&u, wf).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["output"]["notified"], "web-2: within limits");
    assert_eq!(tasks_run(&app, wf).await, ["check", "notify"]);
    let pending = app.get(&u, "/api/v1/inquiries?status=pending").await;
    assert_eq!(pending.body["total"], 0);
}
