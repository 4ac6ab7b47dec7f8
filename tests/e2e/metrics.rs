//! `GET /metrics`: the Prometheus text parses (an independent parser, `prometheus-parse`,
//! plus a strict check of every sample line) and its counters move with the work. The
//! recorder is per process and tests of one process share it, so every counter is
//! compared as a delta between two scrapes, never as an absolute value.

use std::time::Duration;

use attune_tests::{eventually, TestApp, User};
use prometheus_parse::{Scrape, Value as Metric};
use serde_json::json;

/// The five work tables sql/metrics/queue_depth.sql reports.
const QUEUES: &[&str] =
    &["executions_requested", "executions_scheduled", "executions_running", "events_unprocessed", "inquiries_pending"];

/// A series (metric name and its exact labels) and how much it must have grown.
type Expected<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// Scrapes `/metrics` (no credentials), checks its content type and every line, parses it.
async fn scrape(app: &TestApp) -> Scrape {
    let res = app.http.get(format!("{}/metrics", app.url)).send().await.expect("the API answers");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res.headers()[reqwest::header::CONTENT_TYPE].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = res.text().await.unwrap();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        strict_sample(line);
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("the metrics parse")
}

/// `name{label="value",...} number`, as the text format defines a sample line.
fn strict_sample(line: &str) {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
    assert!(value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value), "not a number: {line:?}");
    let name = series.split('{').next().unwrap();
    assert!(
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name: {line:?}"
    );
    assert!(name.starts_with("attune_"), "every metric is prefixed attune_: {line:?}");
    if let Some(labels) = series.strip_prefix(name) {
        if !labels.is_empty() {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "bad labels: {line:?}");
        }
    }
}

/// The value of `metric` with exactly `labels` (0 when the series does not exist yet); for
/// a histogram, its count.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                && s.labels.len() == labels.len()
        })
        .map(|s| match &s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            Metric::Histogram(buckets) => {
                buckets.iter().find(|b| b.less_than.is_infinite()).map(|b| b.count).unwrap_or_default()
            }
            Metric::Summary(_) => panic!("{metric} is a summary"),
        })
        .unwrap_or(0.0)
}

fn has(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> bool {
    scrape.samples.iter().any(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

async fn created(app: &TestApp, u: &User, path: &str, body: serde_json::Value) -> serde_json::Value {
    let a = app.post(u, path, body.clone()).await;
    assert_eq!(a.status, 201, "{body}: {:?}", a.body);
    a.body
}

#[tokio::test]
async fn metrics_parse_and_counters_move_with_the_work() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("metered").await;
    created(&app, &u, "/api/v1/packs", json!({"ref": "m", "version": "1.0.0"})).await;
    let hook = created(&app, &u, "/api/v1/triggers", json!({"ref": "m.hook", "type": "webhook"})).await;
    let url = hook["webhook_url"].as_str().unwrap().to_string();
    created(&app, &u, "/api/v1/actions", json!({"ref": "m.ok", "runner_type": "shell", "command": "echo ok"})).await;
    created(
        &app,
        &u,
        "/api/v1/actions",
        json!({"ref": "m.fail", "runner_type": "shell", "command": "exit 3",
               "parameters": {"n": {"type": "integer", "required": true}}}),
    )
    .await;
    created(&app, &u, "/api/v1/rules", json!({"ref": "m.on_hook", "trigger": "m.hook", "action": "m.ok"})).await;

    let before = scrape(&app).await;
    for queue in QUEUES {
        assert!(has(&before, "attune_queue_depth", &[("queue", queue)]), "queue depth of {queue}");
        assert!(has(&before, "attune_queue_oldest_age_seconds", &[("queue", queue)]), "oldest age of {queue}");
    }
    assert!(value(&before, "attune_db_pool_connections", &[("state", "open")]) >= 1.0, "the pool has a connection");
    assert!(has(&before, "attune_db_pool_connections", &[("state", "idle")]));

    // A webhook accepted (→ event → enforcement → a succeeded shell execution), one refused.
    let event_id = app.fire(&url, json!({"k": 1})).await;
    let refused = app.http.post(format!("{url}x")).json(&json!({})).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 404);
    let execution_id = eventually("the rule's execution", Duration::from_secs(30), || async {
        let list = app.get(&u, &format!("/api/v1/enforcements?event={event_id}")).await;
        list.body["data"].as_array().and_then(|d| d.first()).and_then(|e| e["execution_id"].as_i64())
    })
    .await;
    assert_eq!(app.finished_execution(&u, execution_id).await["status"], "succeeded");
    // A failed execution, and one refused by admission (bad parameters: 4xx, never runs).
    let run = created(&app, &u, "/api/v1/executions", json!({"action": "m.fail", "parameters": {"n": 1}})).await;
    assert_eq!(app.finished_execution(&u, run["id"].as_i64().unwrap()).await["status"], "failed");
    let bad = app.post(&u, "/api/v1/executions", json!({"action": "m.fail", "parameters": {"n": "one"}})).await;
    assert!((400..500).contains(&bad.status), "{:?}", bad.body);

    // The worker counts a result right after writing it: wait for the counters to catch up.
    let expected: &[Expected] = &[
        ("attune_webhooks_total", &[("outcome", "accepted")], 1.0),
        ("attune_webhooks_total", &[("outcome", "refused")], 1.0),
        ("attune_events_total", &[("source", "webhook")], 1.0),
        ("attune_enforcements_total", &[], 1.0),
        ("attune_executions_finished_total", &[("status", "succeeded"), ("runner", "shell")], 1.0),
        ("attune_executions_finished_total", &[("status", "failed"), ("runner", "shell")], 1.0),
        ("attune_admission_failures_total", &[("reason", "invalid_parameters"), ("runner", "shell")], 1.0),
        // The rule's execution is claimed; the manual run is claimed too, or handed to the
        // idle lane of this process (counted apart): two between them.
        ("attune_claim_batch_size", &[], 1.0),
    ];
    let taken = |scrape: &Scrape| {
        value(scrape, "attune_claim_batch_size", &[]) + value(scrape, "attune_executions_handed_total", &[])
    };
    let after = eventually("the counters to move", Duration::from_secs(10), || async {
        let after = scrape(&app).await;
        let moved = expected.iter().all(|(m, l, d)| value(&after, m, l) - value(&before, m, l) >= *d);
        (moved && taken(&after) - taken(&before) >= 2.0).then_some(after)
    })
    .await;
    for (metric, labels, delta) in expected {
        let moved = value(&after, metric, labels) - value(&before, metric, labels);
        assert!(moved >= *delta, "{metric}{labels:?} moved by {moved}, expected at least {delta}");
    }
    // Both executions have ended: this process's slots are free again (other tests of the
    // same process may hold some, so only the type and sign are checked).
    assert!(value(&after, "attune_worker_slots_in_use", &[]) >= 0.0);
    assert!(after.docs.is_empty() || after.docs.keys().all(|k| k.starts_with("attune_")));
}
