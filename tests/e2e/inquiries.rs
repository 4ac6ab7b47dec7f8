//! Inquiries end to end (issue 10, part 2): `core.ask` opens an inquiry and its execution
//! waits `paused`; an answer over the API (checked against the schema, only by those
//! allowed) ends it with the answer as `result.output`; the TTL expires it with the
//! default (the row is the timer: it survives the executor's restart); a workflow pauses
//! at each inquiry and goes on after each answer; the stream carries the inquiry's changes.

use std::time::Duration;

use attune_core::Shutdown;
use attune_tests::stream::Socket;
use attune_tests::{eventually, TestApp, User};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

async fn run(app: &TestApp, u: &User, action: &str, parameters: Value) -> i64 {
    let r = app.post(u, "/api/v1/executions", json!({"action": action, "parameters": parameters})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

async fn status_of(app: &TestApp, u: &User, id: i64) -> String {
    let e = app.get(u, &format!("/api/v1/executions/{id}")).await;
    assert_eq!(e.status, 200, "{:?}", e.body);
    e.body["status"].as_str().unwrap().to_string()
}

async fn wait_status(app: &TestApp, u: &User, id: i64, want: &str) {
    eventually(&format!("execution {id} to be {want}"), WAIT, || async {
        (status_of(app, u, id).await == want).then_some(())
    })
    .await;
}

/// The pending inquiry of execution `execution_id`, once it is open.
async fn pending_inquiry(app: &TestApp, u: &User, execution_id: i64) -> Value {
    eventually(&format!("an inquiry for execution {execution_id}"), WAIT, || async {
        let page = app.get(u, "/api/v1/inquiries?status=pending").await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        page.body["data"].as_array().unwrap().iter().find(|i| i["execution_id"] == execution_id).cloned()
    })
    .await
}

async fn respond(app: &TestApp, u: &User, inquiry: i64, response: Value) -> attune_tests::Answer {
    app.post(u, &format!("/api/v1/inquiries/{inquiry}/respond"), json!({"response": response})).await
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap()
}

#[tokio::test]
async fn t2_6_an_approval_pauses_the_execution_until_it_is_answered() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("approver").await;
    let schema = json!({"approved": {"type": "boolean", "required": true}, "reason": {"type": "string"}});
    let exec =
        run(&app, &u, "core.ask", json!({"prompt": "Deploy to prod?", "schema": schema, "ttl_seconds": 600})).await;
    wait_status(&app, &u, exec, "paused").await;
    let inquiry = pending_inquiry(&app, &u, exec).await;
    assert_eq!(inquiry["prompt"], "Deploy to prod?");
    assert_eq!(inquiry["status"], "pending");
    assert_eq!(inquiry["schema"]["required"], json!(["approved"]));
    // The TTL is set: expires_at is ttl_seconds after the inquiry was made.
    let at = |f: &str| inquiry[f].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let ttl = (at("expires_at") - at("created_at")).num_seconds();
    assert!((599..=601).contains(&ttl), "expires {ttl} s after creation");
    // The row is in the table, in the execution's tenant.
    let (tenant, status): (i64, String) =
        sqlx::query_as("SELECT tenant_id, status FROM attune.inquiry WHERE execution_id = $1")
            .bind(exec)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!((tenant, status.as_str()), (u.tenant_id, "pending"));

    // Answers that do not satisfy the schema are refused, naming the field; nothing changes.
    let bad = respond(&app, &u, id(&inquiry), json!({"approved": "yes"})).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert!(bad.body["error"]["message"].as_str().unwrap().contains("response.approved"), "{:?}", bad.body);
    let missing = respond(&app, &u, id(&inquiry), json!({"reason": "because"})).await;
    assert_eq!(missing.status, 400);
    assert!(missing.body["error"]["message"].as_str().unwrap().contains("approved"), "{:?}", missing.body);
    let no_body = app.post(&u, &format!("/api/v1/inquiries/{}/respond", id(&inquiry)), json!({})).await;
    assert!(no_body.status == 400 || no_body.status == 422, "{:?}", no_body.body);
    assert_eq!(status_of(&app, &u, exec).await, "paused");

    let answer = json!({"approved": true, "reason": "change window is open"});
    let ok = respond(&app, &u, id(&inquiry), answer.clone()).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["status"], "responded");
    assert_eq!(ok.body["response"], answer);
    assert_eq!(ok.body["responded_by"], u.id);
    assert_eq!(ok.body["responded_by_login"], "approver");
    let done = app.finished_execution(&u, exec).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["output"], answer, "the action's result is the answer");

    // Answered once: a second answer is a conflict, and the first stands.
    let again = respond(&app, &u, id(&inquiry), json!({"approved": false})).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    let stored = app.get(&u, &format!("/api/v1/inquiries/{}", id(&inquiry))).await;
    assert_eq!(stored.body["response"], answer);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM attune.audit_log WHERE action = 'inquiry.responded' AND entity_id = $1 AND actor_id = $2",
    )
    .bind(id(&inquiry).to_string())
    .bind(u.id.to_string())
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(audited, 1);

    // The other kinds of question: a yes/no, a multiple choice, a multi-field form.
    for (schema, wrong, right) in [
        (json!({"type": "boolean"}), json!("yes"), json!(true)),
        (
            json!({"choice": {"enum": ["blue", "green"], "required": true}}),
            json!({"choice": "red"}),
            json!({"choice": "green"}),
        ),
        (
            json!({"type": "object", "properties": {"host": {"type": "string"}, "replicas": {"type": "integer", "minimum": 1}},
                   "required": ["host", "replicas"]}),
            json!({"host": "db1", "replicas": 0}),
            json!({"host": "db1", "replicas": 3}),
        ),
    ] {
        let exec = run(&app, &u, "core.ask", json!({"prompt": "?", "schema": schema})).await;
        let inquiry = pending_inquiry(&app, &u, exec).await;
        let refused = respond(&app, &u, id(&inquiry), wrong.clone()).await;
        assert_eq!(refused.status, 400, "{schema}: {wrong} was accepted: {:?}", refused.body);
        assert!(refused.body["error"]["message"].as_str().unwrap().contains("response"), "{:?}", refused.body);
        assert_eq!(respond(&app, &u, id(&inquiry), right.clone()).await.status, 200);
        assert_eq!(app.finished_execution(&u, exec).await["result"]["output"], right);
    }
}

#[tokio::test]
async fn t2_7_an_unanswered_inquiry_expires_with_its_default() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("waiter").await;
    let default = json!({"approved": false, "reason": "nobody answered"});
    let exec = run(
        &app,
        &u,
        "core.ask",
        json!({"prompt": "Approve?", "schema": {"approved": {"type": "boolean"}}, "ttl_seconds": 2, "default_response": default}),
    )
    .await;
    let inquiry = pending_inquiry(&app, &u, exec).await;
    let done = app.finished_execution(&u, exec).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["output"], default);
    let expired = app.get(&u, &format!("/api/v1/inquiries/{}", id(&inquiry))).await;
    assert_eq!(expired.body["status"], "expired");
    assert_eq!(expired.body["response"], Value::Null);
    // Logged: the audit entry and the change.
    let logged: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM attune.audit_log WHERE action = 'inquiry.expired' AND entity_id = $1),
                (SELECT count(*) FROM attune.change_log WHERE event = 'inquiry.expired' AND entity_id = $2)",
    )
    .bind(id(&inquiry).to_string())
    .bind(id(&inquiry))
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(logged, (1, 1));
    let late = respond(&app, &u, id(&inquiry), json!({"approved": true})).await;
    assert_eq!(late.status, 409, "{:?}", late.body);
    assert!(late.body["error"]["message"].as_str().unwrap().contains("expired"), "{:?}", late.body);

    // Without a default the execution fails, saying why.
    let exec = run(&app, &u, "core.ask", json!({"prompt": "Approve?", "ttl_seconds": 1})).await;
    let done = app.finished_execution(&u, exec).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["result"]["failure_reason"], "inquiry_expired");
    assert!(done["result"]["error"].as_str().unwrap().contains("no default_response"), "{done}");
}

#[tokio::test]
async fn the_expiry_is_a_row_and_survives_an_executor_restart() {
    // The API alone; an executor of our own that we stop while the inquiry waits.
    let app = TestApp::spawn().await;
    let u = app.register("restart").await;
    let first = Shutdown::new();
    let executor = tokio::spawn(attune_executor::run(app.ctx.clone(), first.clone()));
    let exec = run(&app, &u, "core.ask", json!({"prompt": "?", "ttl_seconds": 2, "default_response": "later"})).await;
    let inquiry = pending_inquiry(&app, &u, exec).await;
    first.cancel();
    executor.await.unwrap().unwrap();
    // Past the TTL with no executor: nothing moves.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.get(&u, &format!("/api/v1/inquiries/{}", id(&inquiry))).await.body["status"], "pending");
    // A new executor (a restart) expires it from the row.
    app.start_executor();
    let done = app.finished_execution(&u, exec).await;
    assert_eq!((done["status"].as_str(), &done["result"]["output"]), (Some("succeeded"), &json!("later")));
    assert_eq!(app.get(&u, &format!("/api/v1/inquiries/{}", id(&inquiry))).await.body["status"], "expired");
}

#[tokio::test]
async fn only_the_roles_and_users_named_may_answer() {
    let app = TestApp::spawn_pipeline().await;
    let admin = app.register("boss").await;
    let viewer = app.add_user(&admin, "vic", "viewer").await;
    let executor = app.add_user(&admin, "ed", "executor").await;
    let editor = app.add_user(&admin, "edna", "editor").await;
    let carol = app.add_user(&admin, "carol", "executor").await;
    let stranger = app.register("stranger").await;

    let exec = run(&app, &admin, "core.ask", json!({"prompt": "?", "roles": ["editor"], "users": ["carol"]})).await;
    let inquiry = pending_inquiry(&app, &admin, exec).await;
    assert_eq!(inquiry["roles"], json!(["editor"]));
    let path = id(&inquiry);
    // A viewer may never respond; an executor not named is refused, naming who may.
    let v = respond(&app, &viewer, path, json!(1)).await;
    assert_eq!(v.status, 403, "{:?}", v.body);
    assert!(v.body["error"]["message"].as_str().unwrap().contains("inquiries:respond"), "{:?}", v.body);
    let e = respond(&app, &executor, path, json!(1)).await;
    assert_eq!(e.status, 403, "{:?}", e.body);
    assert!(e.body["error"]["message"].as_str().unwrap().contains("roles editor or users carol"), "{:?}", e.body);
    // Another tenant does not even see it.
    assert_eq!(respond(&app, &stranger, path, json!(1)).await.status, 404);
    assert_eq!(app.get(&stranger, &format!("/api/v1/inquiries/{path}")).await.status, 404);
    // A named user may answer.
    let c = respond(&app, &carol, path, json!("carol says yes")).await;
    assert_eq!(c.status, 200, "{:?}", c.body);
    assert_eq!(c.body["responded_by_login"], "carol");

    // And a named role.
    let exec = run(&app, &admin, "core.ask", json!({"prompt": "?", "roles": ["editor"]})).await;
    let inquiry = pending_inquiry(&app, &admin, exec).await;
    assert_eq!(respond(&app, &editor, id(&inquiry), json!(2)).await.status, 200);
    assert_eq!(app.finished_execution(&admin, exec).await["result"]["output"], json!(2));

    // Bad parameters fail the execution, naming the parameter; unknown statuses are refused.
    let exec = run(&app, &admin, "core.ask", json!({"prompt": "?", "roles": ["boss"]})).await;
    let failed = app.finished_execution(&admin, exec).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["result"]["error"].as_str().unwrap().contains("parameter roles"), "{failed}");
    let bad = app.get(&admin, "/api/v1/inquiries?status=open").await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(respond(&app, &admin, 999_999, json!(1)).await.status, 404);
}

#[tokio::test]
async fn canceling_a_waiting_inquiry_cancels_it_and_refuses_answers() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("canceler").await;
    let exec = run(&app, &u, "core.ask", json!({"prompt": "?"})).await;
    let inquiry = pending_inquiry(&app, &u, exec).await;
    let c = app.post(&u, &format!("/api/v1/executions/{exec}/cancel"), json!({})).await;
    assert_eq!(c.status, 202, "{:?}", c.body);
    let done = app.finished_execution(&u, exec).await;
    assert_eq!(done["status"], "canceled", "{done}");
    assert_eq!(app.get(&u, &format!("/api/v1/inquiries/{}", id(&inquiry))).await.body["status"], "canceled");
    let late = respond(&app, &u, id(&inquiry), json!(true)).await;
    assert_eq!(late.status, 409, "{:?}", late.body);
}

#[tokio::test]
async fn t3_9_a_workflow_pauses_at_each_approval() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("twostep").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "wf", "version": "1.0.0"})).await.status, 201);
    let approval = json!({"approved": {"type": "boolean", "required": true}, "by": {"type": "string"}});
    let def = json!({
        "tasks": [
            {"name": "manager", "action": "core.ask",
             "input": {"prompt": "Manager approval for {{ execution.params.change }}?", "schema": approval}},
            {"name": "security", "action": "core.ask", "depends_on": ["manager"],
             "input": {"prompt": "Security approval (manager {{ task_manager.result.output.by }} said {{ task_manager.result.output.approved }})?",
                       "schema": approval}},
            {"name": "apply", "action": "core.echo", "depends_on": ["security"],
             "input": {"message": "{{ execution.params.change }}: {{ tasks.manager.result.output.by }} and {{ tasks.security.result.output.by }}"}}
        ],
        "output": {"applied": "{{ task_apply.result.output.message }}"}
    });
    let a =
        app.post(&u, "/api/v1/actions", json!({"ref": "wf.change", "runner_type": "workflow", "workflow": def})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let wf = run(&app, &u, "wf.change", json!({"change": "CHG-7"})).await;

    // First pause: the manager's inquiry, and only it.
    let child_of = |task: &'static str| {
        let app = &app;
        async move {
            eventually(&format!("task {task}"), WAIT, || async {
                sqlx::query_scalar::<_, i64>(
                    "SELECT id FROM attune.execution WHERE parent_id = $1 AND workflow_task = $2",
                )
                .bind(wf)
                .bind(task)
                .fetch_optional(app.pool())
                .await
                .unwrap()
            })
            .await
        }
    };
    let manager = child_of("manager").await;
    let first = pending_inquiry(&app, &u, manager).await;
    assert_eq!(first["prompt"], "Manager approval for CHG-7?");
    wait_status(&app, &u, wf, "paused").await;
    let pending = app.get(&u, "/api/v1/inquiries?status=pending").await;
    assert_eq!(pending.body["total"], 1, "{:?}", pending.body);
    assert_eq!(respond(&app, &u, id(&first), json!({"approved": true, "by": "maria"})).await.status, 200);

    // Second pause: the security inquiry, which sees the first answer.
    let security = child_of("security").await;
    let second = pending_inquiry(&app, &u, security).await;
    assert_eq!(second["prompt"], "Security approval (manager maria said True)?");
    wait_status(&app, &u, wf, "paused").await;
    assert_eq!(respond(&app, &u, id(&second), json!({"approved": true, "by": "sam"})).await.status, 200);

    let done = app.finished_execution(&u, wf).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["output"]["applied"], "CHG-7: maria and sam");
    // The workflow's own statuses, in order, from the change log.
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT attune.change_json(data) ->> 'status' FROM attune.change_log WHERE entity_type = 'execution' AND entity_id = $1 ORDER BY id",
    )
    .bind(wf)
    .fetch_all(app.pool())
    .await
    .unwrap();
    let mut steps = statuses.clone();
    steps.dedup();
    let from_running: Vec<&str> = steps.iter().map(String::as_str).skip_while(|s| *s != "running").collect();
    assert_eq!(from_running, ["running", "paused", "running", "paused", "running", "succeeded"], "{statuses:?}");
}

#[tokio::test]
async fn a_nested_workflow_waiting_on_an_inquiry_pauses_its_parents() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("nested").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "wf", "version": "1.0.0"})).await.status, 201);
    let inner = json!({"tasks": [{"name": "ask", "action": "core.ask", "input": {"prompt": "inner?"}}],
                       "output": {"answer": "{{ task_ask.result.output }}"}});
    let outer = json!({"tasks": [{"name": "sub", "action": "wf.inner"}],
                       "output": {"answer": "{{ task_sub.result.output.answer }}"}});
    for (name, def) in [("inner", inner), ("outer", outer)] {
        let a = app
            .post(
                &u,
                "/api/v1/actions",
                json!({"ref": format!("wf.{name}"), "runner_type": "workflow", "workflow": def}),
            )
            .await;
        assert_eq!(a.status, 201, "{:?}", a.body);
    }
    let outer = run(&app, &u, "wf.outer", json!({})).await;
    let inquiry = eventually("the inner inquiry", WAIT, || async {
        let page = app.get(&u, "/api/v1/inquiries?status=pending").await;
        page.body["data"].as_array().unwrap().first().cloned()
    })
    .await;
    wait_status(&app, &u, outer, "paused").await;
    let inner: i64 = sqlx::query_scalar("SELECT id FROM attune.execution WHERE parent_id = $1")
        .bind(outer)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(status_of(&app, &u, inner).await, "paused");
    assert_eq!(respond(&app, &u, id(&inquiry), json!("deep")).await.status, 200);
    let done = app.finished_execution(&u, outer).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["output"]["answer"], "deep");
}

#[tokio::test]
async fn t3_15_the_stream_announces_inquiries_as_they_open_and_are_answered() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("watcher").await;
    let mut ws = Socket::connect(&app, Some(&u.token)).await;
    ws.subscribe(json!({"type": "subscribe", "entity_types": ["inquiry"]})).await;
    let exec = run(&app, &u, "core.ask", json!({"prompt": "Ship it?", "schema": {"type": "boolean"}})).await;
    let created = ws.change().await;
    assert_eq!(created["event"], "inquiry.created", "{created}");
    assert_eq!(created["entity_type"], "inquiry");
    assert_eq!(created["data"]["prompt"], "Ship it?");
    assert_eq!(created["data"]["execution_id"], exec);
    assert_eq!(created["data"]["status"], "pending");
    let inquiry = created["entity_id"].as_i64().unwrap();
    assert_eq!(respond(&app, &u, inquiry, json!(true)).await.status, 200);
    let responded = ws.change().await;
    assert_eq!(responded["event"], "inquiry.responded", "{responded}");
    assert_eq!(responded["entity_id"], inquiry);
    assert_eq!(responded["data"]["response"], true);
    assert_eq!(responded["data"]["status"], "responded");
}

#[tokio::test]
async fn the_documented_approval_example_runs() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("askdocs").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "demo", "version": "1"})).await.status, 201);
    let doc = std::fs::read_to_string(attune_tests::workspace_root().join("docs/workflows.md")).unwrap();
    let section = doc.split("## Inquiries").nth(1).unwrap();
    let example = section.split("```json\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
    let def: Value = serde_json::from_str(example).unwrap();
    let a = app
        .post(&u, "/api/v1/actions", json!({"ref": "demo.change", "runner_type": "workflow", "workflow": def}))
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    for (approvals, ran) in [(vec![true, true], vec!["manager", "security", "apply"]), (vec![false], vec!["manager"])] {
        let wf = run(&app, &u, "demo.change", json!({"change": "CHG-1"})).await;
        for approved in approvals {
            let inquiry = eventually("the next approval", WAIT, || async {
                let page = app.get(&u, "/api/v1/inquiries?status=pending").await;
                page.body["data"].as_array().unwrap().first().cloned()
            })
            .await;
            assert_eq!(respond(&app, &u, id(&inquiry), json!({"approved": approved})).await.status, 200);
        }
        let done = app.finished_execution(&u, wf).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let tasks: Vec<String> =
            sqlx::query_scalar("SELECT workflow_task FROM attune.execution WHERE parent_id = $1 ORDER BY id")
                .bind(wf)
                .fetch_all(app.pool())
                .await
                .unwrap();
        assert_eq!(tasks, ran);
    }
}
