//! The http runner end to end (T3.18, T3.8): actions whose `http` block the worker calls,
//! against a real local HTTP server started by the test and against Attune's own webhooks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_tests::{eventually, TestApp, User};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// A request the test server received.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Records the request; answers 201 with an id, the JSON body it got and the
/// Authorization header it got (so the test sees that the stored result masks it).
async fn create_user(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let received: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let id = {
        let mut log = log.lock().unwrap();
        log.push(Seen { method, uri, headers, body });
        log.len()
    };
    (StatusCode::CREATED, Json(json!({"id": id, "received": received, "authorization": authorization})))
}

/// A local API: `POST /users` (201), `/fail` (500 with a JSON error), `/slow` (answers
/// after 30 s). Returns its base URL and the requests it saw.
async fn local_server() -> (String, Log) {
    let log = Log::default();
    let app = Router::new()
        .route("/users", post(create_user))
        .route(
            "/fail",
            any(|| async { (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": "database on fire"}))) }),
        )
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log)
}

async fn created(app: &TestApp, u: &User, path: &str, body: Value) -> Value {
    let a = app.post(u, path, body.clone()).await;
    assert!(a.status == 201 || a.status == 200, "POST {path} {body}: {} {:?}", a.status, a.body);
    a.body
}

/// Runs `action` by hand and waits for its end.
async fn run(app: &TestApp, u: &User, action: &str, parameters: Value) -> Value {
    let run = created(app, u, "/api/v1/executions", json!({"action": action, "parameters": parameters})).await;
    app.finished_execution(u, run["id"].as_i64().unwrap()).await
}

#[tokio::test]
async fn t3_18_http_runner_calls_a_local_server() {
    let (server, log) = local_server().await;
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("http-caller").await;
    created(&app, &u, "/api/v1/packs", json!({"ref": "h", "version": "1.0.0"})).await;
    created(&app, &u, "/api/v1/datastore", json!({"key": "api_key", "value": "dk-7781-secret", "encrypted": true}))
        .await;
    created(
        &app,
        &u,
        "/api/v1/actions",
        json!({
            "ref": "h.api_call", "runner_type": "http", "secrets": ["api_key"],
            "parameters": {
                "path": {"type": "string", "default": "/users"},
                "name": {"type": "string", "required": true},
                "age": {"type": "integer"},
                "token": {"type": "string", "secret": true, "required": true}
            },
            "http": {
                "method": "POST",
                "url": format!("{server}{{{{ params.path }}}}"),
                "headers": {
                    "Content-Type": "application/json",
                    "Authorization": "Bearer {{ params.token }}",
                    "X-Api-Key": "{{ secret.api_key }}"
                },
                "body": {"user": {"name": "{{ params.name }}", "age": "{{ params.age }}"}, "source": "attune"},
                "timeout_seconds": 2
            }
        }),
    )
    .await;

    // The call: method, headers (one from a secret parameter, one from a datastore
    // secret) and the templated JSON body reach the server; its answer is the output.
    let params = json!({"name": "Ada", "age": 36, "token": "tok-5521-secret"});
    let ex = run(&app, &u, "h.api_call", params.clone()).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one request: {seen:?}");
    let req = &seen[0];
    assert_eq!((&req.method, req.uri.path()), (&Method::POST, "/users"));
    assert_eq!(req.headers["authorization"], "Bearer tok-5521-secret");
    assert_eq!(req.headers["x-api-key"], "dk-7781-secret");
    assert_eq!(req.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, json!({"user": {"name": "Ada", "age": 36}, "source": "attune"}), "one {{ }} keeps the type");
    let output = &ex["result"]["output"];
    assert_eq!(output["status_code"], 201, "{ex}");
    assert_eq!(output["body"]["id"], 1);
    assert_eq!(output["body"]["received"]["user"]["name"], "Ada");
    assert_eq!(output["headers"]["content-type"], "application/json");
    assert_eq!(output["body"]["authorization"], "Bearer ********", "a secret the server echoes is masked");
    assert_eq!(ex["parameters"]["token"], "********");
    assert!(!ex.to_string().contains("tok-5521-secret") && !ex.to_string().contains("dk-7781-secret"), "{ex}");

    // An error status fails the execution, naming the status, and keeps the answer.
    let ex = run(&app, &u, "h.api_call", json!({"path": "/fail", "name": "Bob", "token": "tok-b-secret"})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    let error = ex["result"]["error"].as_str().unwrap();
    assert!(error.ends_with("the server answered 500 Internal Server Error"), "{error}");
    assert_eq!(ex["result"]["output"]["status_code"], 500);
    assert_eq!(ex["result"]["output"]["body"], json!({"error": "database on fire"}));

    // A server that does not answer in time fails it as a timeout.
    let started = std::time::Instant::now();
    let ex = run(&app, &u, "h.api_call", json!({"path": "/slow", "name": "Cy", "token": "tok-c-secret"})).await;
    assert_eq!(
        (ex["status"].as_str(), ex["result"]["failure_reason"].as_str()),
        (Some("failed"), Some("timeout")),
        "{ex}"
    );
    let error = ex["result"]["error"].as_str().unwrap();
    assert!(error.contains("timed out after 2 s (http.timeout_seconds)"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(20), "the call was cut at its timeout");
}

#[tokio::test]
async fn t3_8_chained_webhooks() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("chained").await;
    created(&app, &u, "/api/v1/packs", json!({"ref": "c", "version": "1.0.0"})).await;
    let hook_a = created(&app, &u, "/api/v1/triggers", json!({"ref": "c.hook_a", "type": "webhook"})).await;
    let hook_b = created(&app, &u, "/api/v1/triggers", json!({"ref": "c.hook_b", "type": "webhook"})).await;
    let (url_a, url_b) = (hook_a["webhook_url"].as_str().unwrap(), hook_b["webhook_url"].as_str().unwrap());
    assert!(url_b.contains("/api/v1/webhooks/"), "{url_b}");
    // Action A: POSTs what it is given to webhook B, Attune's own URL.
    created(
        &app,
        &u,
        "/api/v1/actions",
        json!({"ref": "c.forward", "runner_type": "http",
               "parameters": {"order": {"type": "object", "required": true}},
               "http": {"method": "POST", "url": url_b,
                        "body": {"from": "c.forward", "order": "{{ params.order }}"}}}),
    )
    .await;
    created(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "c.on_a", "trigger": "c.hook_a", "action": "c.forward",
               "action_params": {"order": "{{ trigger.data }}"}}),
    )
    .await;
    created(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "c.on_b", "trigger": "c.hook_b", "action": "core.echo",
               "action_params": {"message":
                   "order {{ trigger.data.order.id }} for {{ trigger.data.order.customer }} via {{ trigger.data.from }}"}}),
    )
    .await;

    let order = json!({"id": 4711, "customer": "acme"});
    app.fire(url_a, order.clone()).await;

    // A ran and POSTed to webhook B: B's answer (202 with the event id) is A's output.
    let first = executions_of_rule(&app, &u, "c.on_a").await;
    let a = app.finished_execution(&u, first).await;
    assert_eq!(a["status"], "succeeded", "{a}");
    assert_eq!(a["result"]["output"]["status_code"], 202, "{a}");
    let event_b = a["result"]["output"]["body"]["event_id"].as_i64().expect("webhook B answered with its event id");

    // B's event holds A's body, and rule B ran core.echo with the payload carried through.
    let event = app.get(&u, &format!("/api/v1/events/{event_b}")).await;
    assert_eq!(event.body["trigger_ref"], "c.hook_b");
    assert_eq!(event.body["payload"], json!({"from": "c.forward", "order": order}));
    let second = executions_of_rule(&app, &u, "c.on_b").await;
    let b = app.finished_execution(&u, second).await;
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(b["result"]["output"]["message"], "order 4711 for acme via c.forward");

    // The chain ends there: one event per webhook, one execution per rule.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for trigger in ["c.hook_a", "c.hook_b"] {
        let events = app.get(&u, &format!("/api/v1/events?trigger={trigger}")).await;
        assert_eq!(events.body["total"], 1, "{trigger}: {:?}", events.body);
    }
    let all = app.get(&u, "/api/v1/executions").await;
    assert_eq!(all.body["total"], 2, "{:?}", all.body);
}

/// The id of the one execution `rule` created, once it exists.
async fn executions_of_rule(app: &TestApp, u: &User, rule: &str) -> i64 {
    eventually(&format!("an execution of rule {rule}"), Duration::from_secs(30), || async {
        let list = app.get(u, &format!("/api/v1/executions?rule={rule}")).await;
        list.body["data"].as_array().and_then(|d| d.first()).and_then(|e| e["id"].as_i64())
    })
    .await
}
