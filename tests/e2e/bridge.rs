//! The RabbitMQ bridge against a real broker (`ATTUNE_TEST_AMQP_URL`, default the local
//! `amqp://guest:guest@127.0.0.1:5672`): messages as documented, nothing lost when the
//! broker connection drops or the bridge process dies, inbound messages becoming events
//! and runs, and malformed ones dead-lettered with their reason, never looping.
//!
//! Tests share the broker and the exchange `attune.events`: each listens on a queue of its
//! own bound to routing keys only it produces (synthetic change-log rows of a random
//! entity type) or recognises its messages by a random pack name; each uses an inbound
//! queue of its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attune_bridge::lapin::message::{Delivery, DeliveryResult};
use attune_bridge::lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use attune_bridge::lapin::types::{AMQPValue, FieldTable};
use attune_bridge::lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use attune_core::change_log::Tail;
use attune_core::{Config, Shutdown};
use attune_tests::processes::{ServiceProcess, Spec};
use attune_tests::{eventually, TestApp, User};
use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;

fn amqp_url() -> String {
    std::env::var("ATTUNE_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn unique(prefix: &str) -> String {
    let suffix: String =
        rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(10).map(char::from).collect();
    format!("{prefix}{}", suffix.to_lowercase())
}

/// Bridge on; inbound on `queue` (None: inbound off).
fn bridged(config: &mut Config, queue: Option<&str>) {
    config.bridge.amqp_url = Some(amqp_url());
    match queue {
        Some(q) => config.bridge.inbound_queue = q.to_string(),
        None => config.bridge.amqp_inbound = false,
    }
}

/// Runs the bridge in-process; cancel the token to stop it.
fn start_bridge(app: &TestApp) -> (Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let token = app.shutdown.child_token();
    (token.clone(), tokio::spawn(attune_bridge::run(app.ctx.clone(), token)))
}

async fn connect() -> Connection {
    let props = ConnectionProperties::default().with_connection_name("attune-test-client".into());
    Connection::connect(&amqp_url(), props).await.expect("RabbitMQ runs (rabbitmq-server -detached)")
}

/// What a message arrived as.
#[derive(Debug, Clone)]
struct Got {
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
    data: Vec<u8>,
}

impl From<&Delivery> for Got {
    fn from(d: &Delivery) -> Got {
        Got {
            exchange: d.exchange.to_string(),
            routing_key: d.routing_key.to_string(),
            properties: d.properties.clone(),
            data: d.data.clone(),
        }
    }
}

/// A queue of the test's own, bound to `attune.events` with `pattern`, collecting what arrives.
struct Listener {
    _connection: Connection,
    received: Arc<Mutex<Vec<Got>>>,
}

impl Listener {
    async fn bind(pattern: &str) -> Listener {
        let connection = connect().await;
        let channel = connection.create_channel().await.unwrap();
        channel
            .exchange_declare(
                "attune.events".into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.name().clone(),
                "attune.events".into(),
                pattern.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        consumer.set_delegate(move |delivery: DeliveryResult| {
            let sink = sink.clone();
            async move {
                if let Ok(Some(d)) = delivery {
                    sink.lock().unwrap().push(Got::from(&d));
                }
            }
        });
        Listener { _connection: connection, received }
    }

    /// The `id` of every message received so far, in arrival order (duplicates kept).
    fn ids(&self) -> Vec<i64> {
        self.received.lock().unwrap().iter().map(|d| body(d)["id"].as_i64().expect("an id")).collect()
    }

    fn bodies(&self) -> Vec<(Got, Value)> {
        self.received.lock().unwrap().iter().map(|d| (d.clone(), body(d))).collect()
    }
}

fn body(d: &Got) -> Value {
    serde_json::from_slice(&d.data).expect("a JSON body")
}

fn header<'a>(d: &'a Got, name: &str) -> Option<&'a AMQPValue> {
    d.properties.headers().as_ref().and_then(|h| h.inner().get(name))
}

fn header_text(d: &Got, name: &str) -> Option<String> {
    match header(d, name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// Appends `n` change-log rows of `topic` (event `<topic>.row`) in one statement.
async fn append(pool: &PgPool, topic: &str, n: i64) -> Vec<i64> {
    sqlx::query_scalar(
        "INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
         SELECT 1, $1, g, $1 || '.row', attune.change_other(json_build_object('n', g)) FROM generate_series(1, $2::bigint) g
         RETURNING id",
    )
    .bind(topic)
    .bind(n)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Writes `batches` batches of `per_batch` rows of `topic`, one every `every`.
fn keep_writing(
    pool: PgPool,
    topic: String,
    batches: usize,
    per_batch: i64,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..batches {
            append(&pool, &topic, per_batch).await;
            tokio::time::sleep(every).await;
        }
    })
}

async fn ids_of(pool: &PgPool, topic: &str) -> BTreeSet<i64> {
    sqlx::query_scalar("SELECT id FROM attune.change_log WHERE entity_type = $1")
        .bind(topic)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn cursor(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT last_id FROM attune.consumer_cursor WHERE name = 'bridge'")
        .fetch_optional(pool)
        .await
        .unwrap()
        .unwrap_or(0)
}

/// Waits until every row of `topic` in the table has been received (at least once).
async fn all_received(listener: &Listener, pool: &PgPool, topic: &str, limit: Duration) -> BTreeSet<i64> {
    let expected = ids_of(pool, topic).await;
    eventually(&format!("all {} rows of {topic} to arrive", expected.len()), limit, || async {
        let got: BTreeSet<i64> = listener.ids().into_iter().collect();
        expected.is_subset(&got).then_some(())
    })
    .await;
    let got: BTreeSet<i64> = listener.ids().into_iter().collect();
    assert!(got.is_subset(&ids_of(pool, topic).await), "nothing arrives that is not in the table");
    expected
}

/// Waits until every row of `topic` up to the stored cursor `at` has been received: the
/// cursor never runs ahead of RabbitMQ's confirms.
async fn delivered_up_to(listener: &Listener, pool: &PgPool, topic: &str, at: i64) {
    let stored: BTreeSet<i64> = ids_of(pool, topic).await.into_iter().filter(|id| *id <= at).collect();
    eventually(&format!("every row up to the stored cursor {at} to be delivered"), Duration::from_secs(60), || async {
        let received: BTreeSet<i64> = listener.ids().into_iter().collect();
        stored.is_subset(&received).then_some(())
    })
    .await;
}

/// RabbitMQ's ids (pids) of the open connections whose name starts with `prefix`.
async fn connections_named(prefix: &str) -> Vec<String> {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "-q", "--no-table-headers"])
        .output()
        .await
        .expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl list_connections: {}", String::from_utf8_lossy(&out.stderr));
    // One line per connection: `<rabbit@host.N.N.N>\t[{"product","longstr",...},...]`.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(prefix))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

async fn close_connection(pid: &str) {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["close_connection", pid, "test: dropping the bridge's connection"])
        .output()
        .await
        .expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl close_connection: {}", String::from_utf8_lossy(&out.stderr));
}

fn outbound_connection_prefix(app: &TestApp) -> String {
    format!("attune-bridge/{}/outbound/", app.db.name)
}

async fn setup_pack(app: &TestApp, u: &User, pack: &str) {
    let p = app.post(u, "/api/v1/packs", json!({"ref": pack, "version": "1.0.0"})).await;
    assert_eq!(p.status, 201, "{:?}", p.body);
}

#[tokio::test]
async fn outbound_messages_carry_routing_key_tenant_header_persistence_and_the_change_log_message() {
    let listener = Listener::bind("execution.*").await;
    let app = TestApp::spawn_pipeline_with(|c| bridged(c, None)).await;
    let _bridge = start_bridge(&app);
    let u = app.register("bridged").await;
    let pack = unique("bp");
    setup_pack(&app, &u, &pack).await;
    let action_ref = format!("{pack}.hello");
    let a = app
        .post(&u, "/api/v1/actions", json!({"ref": action_ref, "runner_type": "shell", "command": "echo hello"}))
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let run = app.post(&u, "/api/v1/executions", json!({"action": action_ref})).await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    let id = run.body["id"].as_i64().unwrap();
    assert_eq!(app.finished_execution(&u, id).await["status"], "succeeded");

    // Every change of this execution, as the table holds them.
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM attune.change_log WHERE entity_type = 'execution' AND entity_id = $1")
            .bind(id)
            .fetch_all(app.pool())
            .await
            .unwrap();
    let mine = |l: &Listener| -> Vec<(Got, Value)> {
        l.bodies().into_iter().filter(|(_, b)| b["data"]["action_ref"] == json!(action_ref)).collect()
    };
    eventually("the execution's messages", Duration::from_secs(30), || async {
        (mine(&listener).len() >= rows.len()).then_some(())
    })
    .await;
    let messages = mine(&listener);
    let mut keys = BTreeSet::new();
    for (delivery, body) in &messages {
        let change_id = body["id"].as_i64().unwrap();
        assert!(rows.contains(&change_id), "message {change_id} is one of the execution's rows");
        let change = Tail::after(change_id - 1).next(app.pool(), 1).await.unwrap();
        assert_eq!(change.len(), 1);
        assert_eq!(
            body,
            &serde_json::from_str::<Value>(&change[0].message()).unwrap(),
            "the body is the change log's message, as on the WebSocket"
        );
        assert_eq!(delivery.routing_key.as_str(), change[0].routing_key());
        assert_eq!(delivery.exchange.as_str(), "attune.events");
        assert_eq!(delivery.properties.delivery_mode(), &Some(2), "persistent");
        assert_eq!(delivery.properties.content_type().as_ref().map(|c| c.as_str()), Some("application/json"));
        assert_eq!(delivery.properties.message_id().as_ref().map(|m| m.as_str()), Some(change_id.to_string().as_str()));
        assert_eq!(header(delivery, "tenant_id"), Some(&AMQPValue::LongLongInt(u.tenant_id)));
        keys.insert(delivery.routing_key.as_str().to_string());
    }
    assert!(keys.contains("execution.created") && keys.contains("execution.status_changed"), "{keys:?}");
    let statuses: Vec<&str> = messages.iter().filter_map(|(_, b)| b["data"]["status"].as_str()).collect();
    assert!(statuses.contains(&"succeeded"), "the final status is published: {statuses:?}");
    let received: Vec<i64> = messages.iter().map(|(_, b)| b["id"].as_i64().unwrap()).collect();
    let mut sorted = received.clone();
    sorted.sort();
    assert_eq!(received, sorted, "one publisher publishes in id order");

    // /ready reports the bridge's progress once it has caught up.
    let ready = eventually("the bridge to catch up in /ready", Duration::from_secs(30), || async {
        let r = app.call(None, reqwest::Method::GET, "/ready", None).await;
        (r.status == 200 && r.body["bridge"]["lag"] == 0).then_some(r.body)
    })
    .await;
    assert_eq!(ready["status"], "ready");
    let newest: i64 = sqlx::query_scalar("SELECT max(id) FROM attune.change_log").fetch_one(app.pool()).await.unwrap();
    assert_eq!(ready["bridge"]["cursor"], newest);
    assert_eq!(ready["bridge"]["newest_id"], newest);
    assert!(ready["bridge"]["cursor_updated_at"].is_string(), "{ready}");
}

#[tokio::test]
async fn a_dropped_rabbitmq_connection_loses_nothing() {
    let topic = unique("bt");
    let listener = Listener::bind(&format!("{topic}.*")).await;
    let app = TestApp::spawn_with(|c| bridged(c, None)).await;
    let (stop, bridge) = start_bridge(&app);
    let prefix = outbound_connection_prefix(&app);
    let first = eventually("the bridge to connect", Duration::from_secs(30), || async {
        connections_named(&prefix).await.into_iter().next()
    })
    .await;

    // Changes keep coming while the connection is dropped, twice.
    let writing = Shutdown::new();
    let writer = {
        let (pool, topic, writing) = (app.pool().clone(), topic.clone(), writing.clone());
        tokio::spawn(async move {
            while !writing.is_cancelled() {
                append(&pool, &topic, 25).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    eventually("some rows to arrive", Duration::from_secs(120), || async {
        (listener.ids().len() >= 200).then_some(())
    })
    .await;
    let mut dropped = first;
    for _ in 0..2 {
        close_connection(&dropped).await;
        dropped = eventually("the bridge to reconnect", Duration::from_secs(60), || async {
            connections_named(&prefix).await.into_iter().find(|pid| *pid != dropped)
        })
        .await;
    }
    // Publishing resumes: a row written after the last reconnect arrives. (Not "N more
    // rows within T": how many the writer gets in depends on the disk, and a CI machine's
    // disk has stalled for seconds per insert.)
    let written_before: i64 = ids_of(app.pool(), &topic).await.last().copied().unwrap_or(0);
    eventually("a row written after the reconnects to arrive", Duration::from_secs(120), || async {
        listener.ids().into_iter().any(|id| id > written_before).then_some(())
    })
    .await;
    writing.cancel();
    writer.await.unwrap();

    let expected = all_received(&listener, app.pool(), &topic, Duration::from_secs(120)).await;
    let duplicates = listener.ids().len() - expected.len();
    tracing::info!(rows = expected.len(), duplicates, "every row arrived");
    eventually("the cursor to reach the end", Duration::from_secs(120), || async {
        (cursor(app.pool()).await >= *expected.last().unwrap()).then_some(())
    })
    .await;

    // The drain closes the connection cleanly.
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), bridge).await.expect("the bridge drains").unwrap().unwrap();
    eventually("the bridge's connection to close", Duration::from_secs(15), || async {
        connections_named(&prefix).await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn one_process_publishes_at_a_time_and_a_standby_takes_over() {
    let topic = unique("bt");
    let listener = Listener::bind(&format!("{topic}.*")).await;
    let app = TestApp::spawn_with(|c| bridged(c, None)).await;
    let (stop_first, first) = start_bridge(&app);
    let prefix = outbound_connection_prefix(&app);
    eventually("the first bridge to connect", Duration::from_secs(30), || async {
        (!connections_named(&prefix).await.is_empty()).then_some(())
    })
    .await;
    let standby_token = app.shutdown.child_token();
    let standby = tokio::spawn(attune_bridge::run(app.separate_context().await, standby_token.clone()));

    append(app.pool(), &topic, 500).await;
    all_received(&listener, app.pool(), &topic, Duration::from_secs(30)).await;
    assert_eq!(connections_named(&prefix).await.len(), 1, "only the lock holder connects to publish");
    assert_eq!(listener.ids().len(), 500, "one publisher: each change once");

    // The publisher stops; the standby takes over from the stored cursor.
    stop_first.cancel();
    tokio::time::timeout(Duration::from_secs(30), first).await.expect("the first drains").unwrap().unwrap();
    append(app.pool(), &topic, 500).await;
    let all = all_received(&listener, app.pool(), &topic, Duration::from_secs(30)).await;
    assert_eq!(all.len(), 1000);
    assert_eq!(listener.ids().len(), 1000, "the standby resumed after the drained cursor: no duplicates");
    standby_token.cancel();
    tokio::time::timeout(Duration::from_secs(30), standby).await.expect("the standby drains").unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_bridge_process_resumes_from_its_stored_cursor_and_a_stopped_one_drains() {
    let topic = unique("bt");
    let listener = Listener::bind(&format!("{topic}.*")).await;
    let app = TestApp::spawn().await;
    let mut env = app.process_env();
    env.insert("ATTUNE_AMQP_URL".into(), amqp_url());
    env.insert("ATTUNE_AMQP_INBOUND".into(), "false".into());
    let spec = Spec { args: vec!["serve".into(), "bridge".into()], env, as_pid_one: false };
    let mut bridge = ServiceProcess::start(&spec);
    let publishes = "this process now publishes";
    tokio::task::block_in_place(|| bridge.wait_for_log(publishes, Duration::from_secs(60)));

    // Crash mid-stream: SIGKILL, nothing drained.
    let writer = keep_writing(app.pool().clone(), topic.clone(), 40, 50, Duration::from_millis(25));
    eventually("some rows to arrive", Duration::from_secs(30), || async {
        (listener.ids().len() >= 300).then_some(())
    })
    .await;
    bridge.kill();
    let killed_at = cursor(app.pool()).await;
    delivered_up_to(&listener, app.pool(), &topic, killed_at).await;
    let before_restart = listener.ids().len();

    // Restart: it resumes after the stored cursor, not from the start.
    bridge.restart();
    tokio::task::block_in_place(|| bridge.wait_for_log(publishes, Duration::from_secs(60)));
    writer.await.unwrap();
    let expected = all_received(&listener, app.pool(), &topic, Duration::from_secs(60)).await;
    assert_eq!(expected.len(), 2000);
    let resent: Vec<i64> = listener.ids()[before_restart..].to_vec();
    assert!(
        resent.iter().all(|id| *id > killed_at),
        "after the restart nothing at or below the stored cursor {killed_at} is published again"
    );

    // A graceful stop mid-stream: the batch in flight is confirmed and its cursor stored.
    let writer = keep_writing(app.pool().clone(), topic.clone(), 40, 50, Duration::from_millis(10));
    let target = listener.ids().len() + 300;
    eventually("more rows to arrive", Duration::from_secs(30), || async {
        (listener.ids().len() >= target).then_some(())
    })
    .await;
    let code = tokio::task::block_in_place(|| bridge.terminate(Duration::from_secs(30)));
    assert_eq!(code, Some(0), "the bridge drains and exits cleanly:\n{}", bridge.stderr());
    assert!(bridge.stderr().contains("bridge stopped"), "{}", bridge.stderr());
    writer.await.unwrap();
    let drained_at = cursor(app.pool()).await;
    delivered_up_to(&listener, app.pool(), &topic, drained_at).await;
    // What the stopped process published has arrived by now (it confirmed it all).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let max_received = listener.ids().into_iter().max().unwrap_or(0);
    assert!(drained_at >= max_received, "the drain stored the cursor of everything it published");

    // And once more from the stored cursor: everything arrives.
    let after_stop = listener.ids().len();
    bridge.restart();
    let expected = all_received(&listener, app.pool(), &topic, Duration::from_secs(60)).await;
    assert_eq!(expected.len(), 4000);
    assert!(listener.ids()[after_stop..].iter().all(|id| *id > drained_at), "no republish of a drained batch");
    bridge.kill();
}

/// Throughput of the outbound publisher with confirms, into one bound queue: run with
/// `cargo nextest run --release -p attune-tests --test e2e bench_bridge --run-ignored only
/// --no-capture` (ATTUNE_BENCH_ROWS, default 50,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it on a release build"]
async fn bench_bridge_publish_throughput() {
    let rows: i64 = std::env::var("ATTUNE_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(50_000);
    let topic = unique("bench");
    let listener = Listener::bind(&format!("{topic}.*")).await;
    let app = TestApp::spawn_with(|c| bridged(c, None)).await;
    for _ in 0..rows / 1000 {
        append(app.pool(), &topic, 1000).await;
    }
    let last = *ids_of(app.pool(), &topic).await.last().unwrap();
    let started = Instant::now();
    let _bridge = start_bridge(&app);
    eventually("the cursor to reach the end", Duration::from_secs(600), || async {
        (cursor(app.pool()).await >= last).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    let rate = rows as f64 / elapsed.as_secs_f64();
    println!("bridge: {rows} messages published and confirmed in {elapsed:.2?}: {rate:.0} messages/s");
    all_received(&listener, app.pool(), &topic, Duration::from_secs(120)).await;
}

/// Publishes to `queue` (default exchange) with `headers` and `body`, confirmed.
async fn send(channel: &Channel, queue: &str, headers: &[(&str, AMQPValue)], body: &[u8]) {
    let mut table = FieldTable::default();
    for (k, v) in headers {
        table.insert((*k).into(), v.clone());
    }
    let props = BasicProperties::default().with_headers(table).with_delivery_mode(2);
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            body,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Waits until the bridge has declared `queue`, and returns a publishing channel.
async fn inbound_channel(connection: &Connection, queue: &str) -> Channel {
    eventually(&format!("the bridge to declare {queue}"), Duration::from_secs(30), || async {
        let probe = connection.create_channel().await.unwrap();
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let found = probe.queue_declare(queue.into(), passive, FieldTable::default()).await.is_ok();
        found.then_some(())
    })
    .await;
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    channel
}

/// Ready messages in `queue` (and whether it exists).
async fn depth(connection: &Connection, queue: &str) -> u32 {
    let probe = connection.create_channel().await.unwrap();
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    probe.queue_declare(queue.into(), passive, FieldTable::default()).await.expect("the queue exists").message_count()
}

/// Stops the bridge (so it declares nothing again), then deletes the test's queues.
async fn stop_and_delete_queues(
    bridge: (Shutdown, tokio::task::JoinHandle<anyhow::Result<()>>),
    connection: &Connection,
    queue: &str,
) {
    let (stop, handle) = bridge;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.expect("the bridge drains").unwrap().unwrap();
    let channel = connection.create_channel().await.unwrap();
    for q in [queue.to_string(), format!("{queue}.dlq")] {
        let _ = channel.queue_delete(q.as_str().into(), Default::default()).await;
    }
}

/// A malformed inbound message and the reason it must be dead-lettered with.
struct Case<'a> {
    name: &'a str,
    headers: Vec<(&'a str, AMQPValue)>,
    body: &'a [u8],
    reason: String,
}

impl<'a> Case<'a> {
    fn new(name: &'a str, headers: Vec<(&'a str, AMQPValue)>, body: &'a [u8], reason: &str) -> Case<'a> {
        Case { name, headers, body, reason: reason.to_string() }
    }
}

fn tenant(id: i64) -> AMQPValue {
    AMQPValue::LongLongInt(id)
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

#[tokio::test]
async fn an_inbound_message_becomes_an_event_that_runs_a_rule() {
    let queue = unique("attune.inbound.test-");
    let app = TestApp::spawn_pipeline_with(|c| bridged(c, Some(&queue))).await;
    let bridge = start_bridge(&app);
    let u = app.register("inbound").await;
    let pack = unique("bi");
    setup_pack(&app, &u, &pack).await;
    let trigger = format!("{pack}.orders");
    let t = app.post(&u, "/api/v1/triggers", json!({"ref": trigger, "type": "custom"})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let action_ref = format!("{pack}.say");
    let a = app
        .post(
            &u,
            "/api/v1/actions",
            json!({"ref": action_ref, "runner_type": "python",
                   "code": "def run(params):\n    return {'order': params['order']}\n",
                   "parameters": {"order": {"type": "integer", "required": true}}}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let r = app
        .post(
            &u,
            "/api/v1/rules",
            json!({"ref": format!("{pack}.on_order"), "trigger": trigger, "action": action_ref,
                   "action_params": {"order": "{{ trigger.data.order }}"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let connection = connect().await;
    let channel = inbound_channel(&connection, &queue).await;
    send(&channel, &queue, &[("trigger", text(&trigger)), ("tenant_id", tenant(u.tenant_id))], br#"{"order": 4711}"#)
        .await;

    let event = eventually("the inbound event", Duration::from_secs(30), || async {
        let list = app.get(&u, &format!("/api/v1/events?trigger={trigger}")).await;
        list.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(event["source"], "amqp");
    assert_eq!(event["payload"], json!({"order": 4711}));
    let execution = eventually("the rule's execution", Duration::from_secs(30), || async {
        let list = app.get(&u, &format!("/api/v1/executions?action={action_ref}")).await;
        list.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    let done = app.finished_execution(&u, execution["id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["output"]["order"], 4711);
    assert_eq!(depth(&connection, &queue).await, 0, "the message was acked");
    assert_eq!(depth(&connection, &format!("{queue}.dlq")).await, 0, "nothing dead-lettered");
    stop_and_delete_queues(bridge, &connection, &queue).await;
}

#[tokio::test]
async fn malformed_inbound_messages_are_dead_lettered_with_their_reason_and_never_loop() {
    let queue = unique("attune.inbound.test-");
    let dlq = format!("{queue}.dlq");
    let app = TestApp::spawn_with(|c| bridged(c, Some(&queue))).await;
    let bridge = start_bridge(&app);
    let u = app.register("inbound_bad").await;
    let other = app.register("inbound_other").await;
    let pack = unique("bm");
    setup_pack(&app, &u, &pack).await;
    let hook = format!("{pack}.hook");
    assert_eq!(app.post(&u, "/api/v1/triggers", json!({"ref": hook, "type": "webhook"})).await.status, 201);
    let off = format!("{pack}.off");
    let t = app.post(&u, "/api/v1/triggers", json!({"ref": off, "type": "webhook", "enabled": false})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let timer = format!("{pack}.tick");
    let t = app
        .post(
            &u,
            "/api/v1/triggers",
            json!({"ref": timer, "type": "timer.interval", "parameters": {"interval_seconds": 3600}}),
        )
        .await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let other_pack = unique("bo");
    setup_pack(&app, &other, &other_pack).await;
    let foreign = format!("{other_pack}.hook");
    assert_eq!(app.post(&other, "/api/v1/triggers", json!({"ref": foreign, "type": "webhook"})).await.status, 201);

    let connection = connect().await;
    let channel = inbound_channel(&connection, &queue).await;
    let me = tenant(u.tenant_id);
    let ok_headers = |trigger: &str| vec![("trigger", text(trigger)), ("tenant_id", me.clone())];
    let cases = [
        Case::new("no-trigger", vec![("tenant_id", me.clone())], b"{}", "missing header `trigger`"),
        Case::new("no-tenant", vec![("trigger", text(&hook))], b"{}", "missing header `tenant_id`"),
        Case::new("unknown", ok_headers("nope.nothing"), b"{}", "no trigger `nope.nothing`"),
        Case::new("foreign", ok_headers(&foreign), b"{}", &format!("no trigger `{foreign}`")),
        Case::new("not-json", ok_headers(&hook), b"{not json", "the body is not JSON"),
        Case::new("disabled", ok_headers(&off), b"{}", &format!("trigger `{off}` is disabled")),
        Case::new("timer", ok_headers(&timer), b"{}", "only webhook and custom"),
    ];
    for case in &cases {
        let mut headers = case.headers.clone();
        headers.push(("case", text(case.name)));
        send(&channel, &queue, &headers, case.body).await;
    }
    // And a good one among them: only the bad ones are dead-lettered.
    send(&channel, &queue, &[("trigger", text(&hook)), ("tenant_id", me.clone())], br#"{"ok": true}"#).await;

    eventually("every bad message in the DLQ", Duration::from_secs(30), || async {
        (depth(&connection, &dlq).await as usize == cases.len()).then_some(())
    })
    .await;
    let mut reasons: HashMap<String, (String, Got)> = HashMap::new();
    let reader = connection.create_channel().await.unwrap();
    while let Some(m) = reader.basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        let got = Got::from(&m.delivery);
        let case = header_text(&got, "case").expect("the original headers are kept");
        let reason = header_text(&got, "x-attune-error").expect("the reason header");
        reasons.insert(case, (reason, got));
    }
    for Case { name: case, headers, body, reason: expected } in &cases {
        let (reason, delivery) = reasons.get(*case).unwrap_or_else(|| panic!("{case} is in the DLQ: {reasons:?}"));
        assert!(reason.contains(expected.as_str()), "{case}: {reason:?} names {expected:?}");
        assert_eq!(&delivery.data, body, "{case}: the body is kept");
        for (name, value) in headers {
            assert_eq!(header(delivery, name), Some(value), "{case}: header {name} is kept");
        }
        assert_eq!(header_text(delivery, "x-attune-queue").as_deref(), Some(queue.as_str()));
    }
    let good = eventually("the good message's event", Duration::from_secs(30), || async {
        let list = app.get(&u, &format!("/api/v1/events?trigger={hook}")).await;
        list.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(good["payload"], json!({"ok": true}));

    // Nothing loops: the main queue stays empty and the DLQ gets nothing more.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(1) {
        assert_eq!(depth(&connection, &queue).await, 0, "the main queue is empty");
        assert_eq!(depth(&connection, &dlq).await, 0, "no message comes back to the DLQ");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = app.get(&u, "/api/v1/events").await;
    assert_eq!(events.body["total"], 1, "only the good message became an event: {:?}", events.body);
    stop_and_delete_queues(bridge, &connection, &queue).await;
}

/// Messages that arrive together are written together (one statement, one commit per
/// batch); each still becomes its own event, and a bad one among them — a trigger that
/// does not exist, a body PostgreSQL's jsonb cannot hold — is dead-lettered alone.
#[tokio::test]
async fn a_burst_of_inbound_messages_is_written_in_batches_and_a_bad_one_fails_alone() {
    let queue = unique("attune.inbound.test-");
    let dlq = format!("{queue}.dlq");
    let app = TestApp::spawn_with(|c| bridged(c, Some(&queue))).await;
    let u = app.register("inbound_burst").await;
    let pack = unique("bb");
    setup_pack(&app, &u, &pack).await;
    let hook = format!("{pack}.hook");
    assert_eq!(app.post(&u, "/api/v1/triggers", json!({"ref": hook, "type": "webhook"})).await.status, 201);

    // The bridge declares the queues, then stops: the burst waits in the queue and reaches
    // the next consumer all at once.
    let connection = connect().await;
    let (stop, handle) = start_bridge(&app);
    let channel = inbound_channel(&connection, &queue).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(30), handle).await.expect("the bridge drains").unwrap().unwrap();
    let me = tenant(u.tenant_id);
    for n in 0..150 {
        let (trigger, body) = match n {
            10 => ("nope.nothing".to_string(), json!({"n": n}).to_string()),
            20 => (hook.clone(), r#"{"n": 20, "bad": "x\u0000y"}"#.to_string()),
            _ => (hook.clone(), json!({"n": n}).to_string()),
        };
        send(&channel, &queue, &[("trigger", text(&trigger)), ("tenant_id", me.clone())], body.as_bytes()).await;
    }
    let bridge = start_bridge(&app);

    eventually("the bad messages in the DLQ", Duration::from_secs(60), || async {
        (depth(&connection, &dlq).await == 2).then_some(())
    })
    .await;
    let reader = connection.create_channel().await.unwrap();
    let mut reasons = Vec::new();
    while let Some(m) = reader.basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        reasons.push(header_text(&Got::from(&m.delivery), "x-attune-error").expect("the reason header"));
    }
    reasons.sort();
    assert!(reasons[0].contains("no trigger `nope.nothing`"), "{reasons:?}");
    assert!(reasons[1].contains("the database refused the event"), "{reasons:?}");
    let rows: Vec<(Value, String)> = eventually("148 events", Duration::from_secs(60), || async {
        let rows: Vec<(Value, String)> =
            sqlx::query_as("SELECT payload, xmin::text FROM attune.event WHERE source = 'amqp' ORDER BY id")
                .fetch_all(app.pool())
                .await
                .unwrap();
        (rows.len() == 148).then_some(rows)
    })
    .await;
    let mut seen: Vec<i64> = rows.iter().map(|(p, _)| p["n"].as_i64().unwrap()).collect();
    seen.sort();
    let expected: Vec<i64> = (0..150).filter(|n| *n != 10 && *n != 20).collect();
    assert_eq!(seen, expected, "each good message became exactly one event");
    let commits: BTreeSet<&String> = rows.iter().map(|(_, xmin)| xmin).collect();
    assert!(commits.len() < rows.len(), "messages that arrived together shared commits: {} commits", commits.len());
    assert_eq!(depth(&connection, &queue).await, 0, "every message was acked");
    stop_and_delete_queues(bridge, &connection, &queue).await;
}

#[tokio::test]
async fn a_database_failure_requeues_an_inbound_message_instead_of_dead_lettering_it() {
    let queue = unique("attune.inbound.test-");
    let app = TestApp::spawn_with(|c| bridged(c, Some(&queue))).await;
    let bridge = start_bridge(&app);
    let u = app.register("inbound_db_down").await;
    let pack = unique("bd");
    setup_pack(&app, &u, &pack).await;
    let hook = format!("{pack}.hook");
    assert_eq!(app.post(&u, "/api/v1/triggers", json!({"ref": hook, "type": "webhook"})).await.status, 201);
    let connection = connect().await;
    let channel = inbound_channel(&connection, &queue).await;

    // The event table is gone for a while: every insert fails, as with a database outage.
    sqlx::query("ALTER TABLE attune.event RENAME TO event_away").execute(app.pool()).await.unwrap();
    send(&channel, &queue, &[("trigger", text(&hook)), ("tenant_id", tenant(u.tenant_id))], br#"{"n": 1}"#).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(depth(&connection, &format!("{queue}.dlq")).await, 0, "a database failure is not the message's fault");
    sqlx::query("ALTER TABLE attune.event_away RENAME TO event").execute(app.pool()).await.unwrap();

    let event = eventually("the event once the database is back", Duration::from_secs(30), || async {
        let list = app.get(&u, &format!("/api/v1/events?trigger={hook}")).await;
        list.body["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(event["payload"], json!({"n": 1}));
    assert_eq!(depth(&connection, &queue).await, 0);
    assert_eq!(depth(&connection, &format!("{queue}.dlq")).await, 0);
    stop_and_delete_queues(bridge, &connection, &queue).await;
}
