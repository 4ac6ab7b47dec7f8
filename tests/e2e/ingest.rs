//! The webhook intake's group commit (`crates/api/src/ingest.rs`): webhooks that arrive
//! together are written by one commit, each request still gets its own event, a full
//! intake answers 503 with `Retry-After`, and one body the database cannot store fails
//! only its own request.
//!
//! The batching tests hold the event table locked so that both writers are stuck on it;
//! whatever arrives meanwhile waits in the intake's queue and is written as one batch
//! once the lock goes.

use std::time::Duration;

use attune_tests::{eventually, TestApp};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

/// A tenant with one webhook trigger; its URL.
async fn webhook(app: &TestApp, login: &str) -> String {
    let u = app.register(login).await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "p", "version": "1.0.0"})).await.status, 201);
    let t = app.post(&u, "/api/v1/triggers", json!({"ref": "p.hook", "type": "webhook"})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    t.body["webhook_url"].as_str().unwrap().to_string()
}

/// POSTs `body` (raw JSON text) to `url`: status, `Retry-After` and the JSON answer.
async fn post(http: &reqwest::Client, url: &str, body: String) -> (u16, Option<String>, Value) {
    let res = http.post(url).header("content-type", "application/json").body(body).send().await.unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    (status, retry_after, res.json().await.unwrap_or(Value::Null))
}

/// Locks the event table from a connection of its own; webhooks block until it is dropped.
async fn lock_events(app: &TestApp) -> PgConnection {
    let mut conn = PgConnection::connect_with(&app.db.connect_options()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query("LOCK TABLE attune.event IN ACCESS EXCLUSIVE MODE").execute(&mut conn).await.unwrap();
    conn
}

/// Waits until `n` intake statements wait for the event table's lock (known by their
/// first line: pg_stat_activity keeps only a statement's first KiB).
async fn writers_blocked(app: &TestApp, n: i64) {
    eventually(&format!("{n} intake writers to wait for the lock"), Duration::from_secs(30), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'
                AND query LIKE '-- The webhook intake''s group commit%'",
        )
        .fetch_one(app.pool())
        .await
        .unwrap();
        (waiting == n).then_some(())
    })
    .await;
}

/// Requests in flight, each answering with its number.
type Requests = tokio::task::JoinSet<(i64, (u16, Option<String>, Value))>;

/// Sends `body` to `url` as request `n` of `requests`.
fn spawn_post(requests: &mut Requests, app: &TestApp, url: &str, n: i64, body: String) {
    let (http, url) = (app.http.clone(), url.to_string());
    requests.spawn(async move { (n, post(&http, &url, body).await) });
}

/// Locks the event table and sends requests 0 and 1, which each writer takes and then waits
/// on the lock with: whatever is sent next queues in the intake until the lock is dropped.
async fn hold_both_writers(app: &TestApp, url: &str) -> (PgConnection, Requests) {
    let lock = lock_events(app).await;
    let mut requests = Requests::new();
    for n in 0..2 {
        spawn_post(&mut requests, app, url, n, json!({"n": n}).to_string());
    }
    writers_blocked(app, 2).await;
    (lock, requests)
}

/// The transaction that wrote each event (events of one commit share it).
async fn writers_of(app: &TestApp, ids: &[i64]) -> Vec<String> {
    sqlx::query_scalar("SELECT xmin::text FROM attune.event WHERE id = ANY($1) ORDER BY id")
        .bind(ids)
        .fetch_all(app.pool())
        .await
        .unwrap()
}

/// Many webhooks at once: each answer's event holds that request's own body, whatever
/// batch it was written in.
#[tokio::test]
async fn concurrent_webhooks_each_get_their_own_event() {
    let app = TestApp::spawn().await;
    let url = webhook(&app, "ingest_many").await;
    let mut requests = Requests::new();
    for n in 0..200 {
        spawn_post(&mut requests, &app, &url, n, json!({"n": n}).to_string());
    }
    let mut seen = std::collections::HashSet::new();
    while let Some(done) = requests.join_next().await {
        let (n, (status, _, answer)) = done.unwrap();
        assert_eq!(status, 202, "request {n}: {answer}");
        let id = answer["event_id"].as_i64().unwrap();
        assert!(seen.insert(id), "event {id} answered twice");
        let payload: Value = sqlx::query_scalar("SELECT payload FROM attune.event WHERE id = $1")
            .bind(id)
            .fetch_one(app.pool())
            .await
            .unwrap();
        assert_eq!(payload, json!({"n": n}), "event {id} answers request {n}");
    }
    let changes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM attune.change_log WHERE entity_type = 'event' AND event = 'event.created' AND entity_id = ANY($1)",
    )
    .bind(seen.iter().copied().collect::<Vec<_>>())
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(changes, 200, "each event has its change-log row");
}

/// With both writers busy, requests queue: those that fit are written together by one
/// commit; beyond `api.ingest_queue` the answer is 503 with `Retry-After` at once.
#[tokio::test]
async fn webhooks_arriving_together_share_one_commit_and_a_full_intake_answers_503() {
    let app = TestApp::spawn_with(|c| c.api.ingest_queue = 3).await;
    let url = webhook(&app, "ingest_batch").await;
    let (lock, mut requests) = hold_both_writers(&app, &url).await;
    // Five more: three fill the queue, two are refused.
    for n in 2..7 {
        spawn_post(&mut requests, &app, &url, n, json!({"n": n}).to_string());
    }
    let mut refused = Vec::new();
    while refused.len() < 2 {
        let (n, (status, retry_after, answer)) = tokio::time::timeout(Duration::from_secs(30), requests.join_next())
            .await
            .expect("two refusals")
            .unwrap()
            .unwrap();
        assert_eq!(status, 503, "request {n} answered before the lock went: {answer}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(answer["error"]["code"], "unavailable");
        assert!(answer["error"]["message"].as_str().unwrap().contains("intake is full"), "{answer}");
        refused.push(n);
    }
    drop(lock);
    let mut accepted = Vec::new();
    while let Some(done) = requests.join_next().await {
        let (n, (status, _, answer)) = done.unwrap();
        assert_eq!(status, 202, "request {n}: {answer}");
        accepted.push((n, answer["event_id"].as_i64().unwrap()));
    }
    assert_eq!(accepted.len(), 5);
    let (first, queued): (Vec<_>, Vec<_>) = accepted.iter().partition(|(n, _)| *n < 2);
    let queued_ids: Vec<i64> = queued.iter().map(|(_, id)| *id).collect();
    let writers = writers_of(&app, &queued_ids).await;
    assert_eq!(writers.len(), 3);
    assert!(writers.iter().all(|w| *w == writers[0]), "the three queued requests were one commit: {writers:?}");
    let first_ids: Vec<i64> = first.iter().map(|(_, id)| *id).collect();
    let first_writers = writers_of(&app, &first_ids).await;
    assert!(!first_writers.contains(&writers[0]), "the writers' own requests were commits of their own");
}

/// A body PostgreSQL cannot store (a `\u0000` in a string, valid JSON) fails its own
/// request with 400; the requests of the same batch are written.
#[tokio::test]
async fn a_body_the_database_cannot_store_fails_only_its_own_request() {
    let app = TestApp::spawn().await;
    let url = webhook(&app, "ingest_nul").await;
    let (lock, mut requests) = hold_both_writers(&app, &url).await;
    for n in 2..6 {
        let body = if n == 3 { r#"{"n": 3, "bad": "x\u0000y"}"#.to_string() } else { json!({"n": n}).to_string() };
        spawn_post(&mut requests, &app, &url, n, body);
    }
    // Give the four a moment to queue behind the writers (if one is late it is simply
    // written in a batch of its own; the answers below hold either way).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(lock);
    while let Some(done) = requests.join_next().await {
        let (n, (status, _, answer)) = done.unwrap();
        if n == 3 {
            assert_eq!(status, 400, "{answer}");
            assert!(answer["error"]["message"].as_str().unwrap().contains("cannot store"), "{answer}");
        } else {
            assert_eq!(status, 202, "request {n}: {answer}");
            let id = answer["event_id"].as_i64().unwrap();
            let payload: Value = sqlx::query_scalar("SELECT payload FROM attune.event WHERE id = $1")
                .bind(id)
                .fetch_one(app.pool())
                .await
                .unwrap();
            assert_eq!(payload, json!({"n": n}));
        }
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.event WHERE source = 'webhook'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(events, 5, "every request but the bad one became an event");
}
