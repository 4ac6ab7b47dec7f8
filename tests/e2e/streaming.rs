//! The WebSocket stream (`/ws`, served by the notifier on the API's port): every change of
//! the socket's tenant, in order, replayable with `since`; authentication by header or
//! first message only; slow sockets closed without holding up the others.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use attune_tests::processes::{ServiceProcess, Spec};
use attune_tests::stream::{Connect, Received, Socket};
use attune_tests::{eventually, TestApp, User};
use futures::future::join_all;
use serde_json::{json, Value};

/// A pack `p` with a webhook trigger `p.<name>`; returns its webhook URL.
async fn webhook(app: &TestApp, u: &User, name: &str) -> String {
    let pack = app.post(u, "/api/v1/packs", json!({"ref": "p", "version": "1"})).await;
    assert!(pack.status == 201 || pack.status == 409, "{:?}", pack.body);
    let t = app.post(u, "/api/v1/triggers", json!({"ref": format!("p.{name}"), "type": "webhook"})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    t.body["webhook_url"].as_str().unwrap().to_string()
}

async fn rule(app: &TestApp, u: &User, body: Value) -> i64 {
    let r = app.post(u, "/api/v1/rules", body.clone()).await;
    assert_eq!(r.status, 201, "{body}: {:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

async fn run_noop(app: &TestApp, u: &User) -> i64 {
    let run = app.post(u, "/api/v1/executions", json!({"action": "core.noop"})).await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    run.body["id"].as_i64().unwrap()
}

/// Waits until every event of `tenant` is processed and every execution has ended: its
/// change log is complete.
async fn settled(app: &TestApp, tenant: i64) {
    eventually(&format!("tenant {tenant}'s work to settle"), Duration::from_secs(60), || async {
        let pending: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM attune.event WHERE tenant_id = $1 AND processed_at IS NULL)
                  + (SELECT count(*) FROM attune.execution WHERE tenant_id = $1
                      AND status NOT IN ('succeeded', 'failed', 'canceled', 'succeeded_with_errors'))",
        )
        .bind(tenant)
        .fetch_one(app.pool())
        .await
        .unwrap();
        (pending == 0).then_some(())
    })
    .await;
}

/// The change log of `tenant` after `since`, as the stream's messages.
async fn logged(app: &TestApp, tenant: i64, since: i64) -> Vec<Value> {
    let rows: Vec<(i64, String, String, i64, Value, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT id, event, entity_type, entity_id, attune.change_json(data), created_at FROM attune.change_log
          WHERE tenant_id = $1 AND id > $2 ORDER BY id",
    )
    .bind(tenant)
    .bind(since)
    .fetch_all(app.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, event, entity_type, entity_id, data, at)| {
            json!({"id": id, "event": event, "entity_type": entity_type, "entity_id": entity_id, "data": data,
                   "timestamp": at})
        })
        .collect()
}

fn ids(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(|m| m["id"].as_i64().unwrap()).collect()
}

/// Reads changes until one with id `last` (inclusive).
async fn changes_through(ws: &mut Socket, last: i64) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let change = ws.change().await;
        let id = change["id"].as_i64().unwrap();
        got.push(change);
        if id >= last {
            return got;
        }
    }
}

#[tokio::test]
async fn t3_14_every_transition_of_an_execution_arrives_in_order() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("watcher").await;
    let mut ws = Socket::connect(&app, Some(&u.token)).await;
    let ack = ws.subscribe(json!({"type": "subscribe", "entity_types": ["execution"]})).await;
    assert_eq!(ack["entity_types"], json!(["execution"]));

    let id = run_noop(&app, &u).await;
    let mut seen = Vec::new();
    let mut last_id = 0;
    loop {
        let m = ws.change().await;
        assert_eq!(m["entity_type"], "execution", "{m}");
        assert_eq!(m["entity_id"], id, "only this tenant's one execution: {m}");
        assert_eq!(m["data"]["execution_id"], id, "{m}");
        assert_eq!(m["data"]["action_ref"], "core.noop", "{m}");
        assert_eq!(m["data"]["tenant_id"], u.tenant_id, "{m}");
        assert!(m["data"].get("secret_params").is_none(), "sealed secrets never leave: {m}");
        assert!(m["timestamp"].is_string(), "{m}");
        let change_id = m["id"].as_i64().unwrap();
        assert!(change_id > last_id, "ids increase: {m}");
        last_id = change_id;
        let status = m["data"]["status"].as_str().unwrap().to_string();
        seen.push((m["event"].as_str().unwrap().to_string(), status.clone()));
        if status == "succeeded" {
            let row = app.get(&u, &format!("/api/v1/executions/{id}")).await.body;
            for field in ["status", "action_ref", "parameters", "attempt", "max_attempts"] {
                assert_eq!(m["data"][field], row[field], "the message holds the full row ({field})");
            }
            // The row's result (stdout and stderr are kept beside it, not in the row).
            for field in ["exit_code", "output", "error"] {
                assert_eq!(m["data"]["result"][field], row["result"][field], "result.{field}");
            }
            for stamp in ["created_at", "scheduled_at", "started_at", "finished_at"] {
                assert!(m["data"][stamp].is_string(), "{stamp} is in the row: {m}");
            }
            assert!(m["data"]["worker_id"].is_i64(), "{m}");
            break;
        }
    }
    let expected = [
        ("execution.created", "requested"),
        ("execution.status_changed", "scheduled"),
        ("execution.status_changed", "running"),
        ("execution.status_changed", "succeeded"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(e, s)| (e.to_string(), s.to_string())).collect();
    assert_eq!(seen, expected);
    assert!(ws.next_within(Duration::from_millis(300)).await.is_none(), "nothing more");
}

#[tokio::test]
async fn t3_16_rule_triggered_only_for_opted_in_rules() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("opted").await;
    let other = app.register("other_tenant").await;
    let hook = webhook(&app, &u, "hook").await;
    let sentinel = webhook(&app, &u, "sentinel").await;
    let loud = rule(
        &app,
        &u,
        json!({"ref": "p.loud", "trigger": "p.hook", "action": "core.noop",
                                     "notify_on_trigger": true}),
    )
    .await;
    rule(&app, &u, json!({"ref": "p.quiet", "trigger": "p.hook", "action": "core.noop"})).await;
    // Another tenant's opted-in rule fires too: never on this tenant's socket.
    let other_hook = webhook(&app, &other, "hook").await;
    rule(
        &app,
        &other,
        json!({"ref": "p.loud", "trigger": "p.hook", "action": "core.noop",
                              "notify_on_trigger": true}),
    )
    .await;

    let mut ws = Socket::connect(&app, Some(&u.token)).await;
    ws.subscribe(json!({"type": "subscribe", "entity_types": ["rule", "event"]})).await;
    let payload = json!({"order": 17, "customer": {"name": "Ada"}});
    let event_id = app.fire(&hook, payload.clone()).await;
    let other_event = app.fire(&other_hook, json!({"order": 99})).await;
    for (user, event) in [(&u, event_id), (&other, other_event)] {
        eventually("the events to be processed", Duration::from_secs(30), || async {
            let e = app.get(user, &format!("/api/v1/events/{event}")).await;
            e.body["processed_at"].is_string().then_some(())
        })
        .await;
    }
    // Everything the rule engine wrote for the event precedes this one.
    let end = app.fire(&sentinel, json!({"end": true})).await;

    let mut triggered = Vec::new();
    loop {
        let m = ws.change().await;
        match m["event"].as_str().unwrap() {
            "rule.triggered" => triggered.push(m),
            "event.created" if m["entity_id"] == end => break,
            "event.created" => assert_eq!(m["entity_id"], event_id, "{m}"),
            other => panic!("unexpected {other}: {m}"),
        }
    }
    assert_eq!(triggered.len(), 1, "one rule.triggered, for the opted-in rule only: {triggered:?}");
    let t = &triggered[0];
    assert_eq!(t["entity_type"], "rule");
    assert_eq!(t["entity_id"], loud);
    assert_eq!(t["data"]["rule_id"], loud);
    assert_eq!(t["data"]["rule_ref"], "p.loud");
    assert_eq!(t["data"]["event_id"], event_id);
    assert_eq!(t["data"]["event"], payload, "the event's details travel with it");
    assert_eq!(t["data"]["trigger_ref"], "p.hook");
    assert!(t["data"]["enforcement_id"].is_i64(), "{t}");
}

#[tokio::test]
async fn a_socket_never_sees_another_tenants_changes() {
    let app = TestApp::spawn_streaming().await;
    let a = app.register("tenant_a").await;
    let b = app.register("tenant_b").await;
    let a_hook = webhook(&app, &a, "hook").await;
    rule(&app, &a, json!({"ref": "p.r", "trigger": "p.hook", "action": "core.noop", "notify_on_trigger": true})).await;
    let b_hook = webhook(&app, &b, "hook").await;

    let mut b_ws = Socket::connect(&app, Some(&b.token)).await;
    // `since: 0` replays everything retained: still only B's.
    b_ws.subscribe(json!({"type": "subscribe", "since": 0})).await;
    let mut a_ws = Socket::connect(&app, Some(&a.token)).await;
    a_ws.subscribe(json!({"type": "subscribe"})).await;

    let fires = (0..15).map(|n| app.fire(&a_hook, json!({"n": n})));
    let runs = (0..5).map(|_| run_noop(&app, &a));
    tokio::join!(join_all(fires), join_all(runs));
    settled(&app, a.tenant_id).await;
    let a_log = logged(&app, a.tenant_id, 0).await;
    assert!(a_log.len() >= 15 * 6 + 5 * 4, "tenant A produced many changes: {}", a_log.len());
    // A's socket got every one of A's changes.
    let a_got = changes_through(&mut a_ws, a_log.last().unwrap()["id"].as_i64().unwrap()).await;
    assert_eq!(ids(&a_got), ids(&a_log));

    let marker = app.fire(&b_hook, json!({"marker": true})).await;
    // The first thing B hears of is its own marker: nothing of A's came before it.
    let first = b_ws.change().await;
    assert_eq!(
        (first["event"].as_str(), first["entity_id"].as_i64()),
        (Some("event.created"), Some(marker)),
        "{first}"
    );
    let b_got = vec![first];
    assert_eq!(b_got, logged(&app, b.tenant_id, 0).await, "B's socket carries exactly B's change log");
    let a_ids: HashSet<i64> = ids(&a_log).into_iter().collect();
    assert!(ids(&b_got).iter().all(|id| !a_ids.contains(id)));
    assert!(b_ws.next_within(Duration::from_millis(300)).await.is_none(), "nothing else for B");
}

#[tokio::test]
async fn unauthenticated_socket_is_closed_4401_after_5_seconds() {
    let app = TestApp::spawn_streaming().await;
    let started = Instant::now();
    let mut ws = Socket::connect(&app, None).await;
    let (code, reason) = ws.closed().await;
    let waited = started.elapsed();
    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("auth"), "the reason says how to authenticate: {reason}");
    assert!(waited >= Duration::from_millis(4500) && waited < Duration::from_secs(15), "{waited:?}");
}

#[tokio::test]
async fn socket_authenticates_by_header_or_first_message_never_by_query_string() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("authed").await;
    let hook = webhook(&app, &u, "hook").await;

    // Header.
    let mut by_header = Socket::connect(&app, Some(&u.token)).await;
    by_header.subscribe(json!({"type": "subscribe", "entity_types": ["event"]})).await;
    // First message.
    let mut by_message = Socket::connect(&app, None).await;
    by_message.auth(&u.token).await;
    by_message.subscribe(json!({"type": "subscribe", "entity_types": ["event"]})).await;
    let event = app.fire(&hook, json!({"hello": 1})).await;
    for ws in [&mut by_header, &mut by_message] {
        let m = ws.change().await;
        assert_eq!((m["event"].as_str(), m["entity_id"].as_i64()), (Some("event.created"), Some(event)), "{m}");
    }

    // The query string: refused at once, even with a valid token.
    for query in [format!("?token={}", u.token), format!("?access_token={}", u.token)] {
        let mut ws = Socket::connect_with(&app, Connect { query: &query, ..Connect::default() }).await;
        let (code, reason) = ws.closed().await;
        assert_eq!(code, 4401, "{reason}");
        assert!(reason.contains("URL"), "{reason}");
    }

    // Bad tokens, by header or by message.
    let forged = {
        let keys = attune_core::tokens::TokenKeys::new(b"another secret", 3600, 3600);
        keys.issue(u.id, u.tenant_id, attune_core::domain::rbac::Role::Admin, &u.login)
    };
    for bad in ["garbage", forged.as_str()] {
        let mut ws = Socket::connect(&app, Some(bad)).await;
        let (code, reason) = ws.closed().await;
        assert_eq!(code, 4401, "{reason}");
        assert!(reason.contains("access token"), "{reason}");
        let mut ws = Socket::connect(&app, None).await;
        ws.auth(bad).await;
        assert_eq!(ws.closed().await.0, 4401);
    }
    // Something else first.
    let mut ws = Socket::connect(&app, None).await;
    ws.send(json!({"type": "subscribe"})).await;
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4401);
    assert!(reason.contains(r#"{"type":"auth""#), "{reason}");
}

#[tokio::test]
async fn socket_closes_4401_when_its_token_expires() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("expiring").await;
    let short = app.ctx.tokens.issue_for(u.id, u.tenant_id, attune_core::domain::rbac::Role::Admin, &u.login, None, 2);
    let mut ws = Socket::connect(&app, Some(&short)).await;
    ws.subscribe(json!({"type": "subscribe"})).await;
    let started = Instant::now();
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4401, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn bad_and_unknown_client_messages_get_clear_answers() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("chatty").await;
    let mut ws = Socket::connect(&app, Some(&u.token)).await;

    ws.send(json!({"type": "unsubscribe"})).await;
    let e = ws.next_json().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["code"], "unknown_message_type");
    assert!(e["error"]["message"].as_str().unwrap().contains("unsubscribe"), "{e}");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.next_json().await, json!({"type": "pong"}), "the socket stays usable");

    ws.send(json!({"type": "subscribe", "entity_types": ["execution", "executions"]})).await;
    let e = ws.next_json().await;
    assert_eq!(e["error"]["code"], "bad_subscription", "{e}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"executions\"") && message.contains("execution, inquiry, event"), "{message}");
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4400);
    assert!(reason.contains("executions"), "{reason}");
}

#[tokio::test]
async fn reconnecting_with_since_misses_nothing_and_repeats_nothing() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("resumer").await;
    let hook = webhook(&app, &u, "hook").await;
    rule(&app, &u, json!({"ref": "p.r", "trigger": "p.hook", "action": "core.noop", "notify_on_trigger": true})).await;

    let mut first = Socket::connect(&app, Some(&u.token)).await;
    first.subscribe(json!({"type": "subscribe"})).await;
    let subscribed_at = logged(&app, u.tenant_id, 0).await.last().map_or(0, |m| m["id"].as_i64().unwrap());

    // Several writers at once: webhooks (event, enforcement, rule.triggered, execution and
    // its transitions) and manual runs.
    let writers = async {
        let (app, hook) = (&app, &hook);
        let hooks = (0..4).map(|w| async move {
            for n in 0..8 {
                app.fire(hook, json!({"writer": w, "n": n})).await;
            }
        });
        let u = &u;
        let runs = (0..2).map(|_| async move {
            for _ in 0..4 {
                run_noop(app, u).await;
            }
        });
        tokio::join!(join_all(hooks), join_all(runs));
    };
    let reader = async {
        let mut seen = Vec::new();
        for _ in 0..12 {
            seen.push(first.change().await);
        }
        drop(first);
        let last = seen.last().unwrap()["id"].as_i64().unwrap();
        // Changes keep coming while nobody listens; then the client comes back.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut second = Socket::connect(&app, Some(&u.token)).await;
        let ack = second.subscribe(json!({"type": "subscribe", "since": last})).await;
        assert_eq!(ack["since"], last);
        (seen, last, second)
    };
    let ((), (seen, last, mut second)) = tokio::join!(writers, reader);
    settled(&app, u.tenant_id).await;

    let log = logged(&app, u.tenant_id, subscribed_at).await;
    let before: Vec<Value> = log.iter().filter(|m| m["id"].as_i64().unwrap() <= last).cloned().collect();
    assert_eq!(seen, before, "the first socket got the log, in order, as it stands");
    let after: Vec<Value> = log.iter().filter(|m| m["id"].as_i64().unwrap() > last).cloned().collect();
    assert!(after.len() > 50, "most changes came after the disconnect: {}", after.len());
    let got = changes_through(&mut second, after.last().unwrap()["id"].as_i64().unwrap()).await;
    assert_eq!(ids(&got), ids(&after), "no gap, no duplicate, in order");
    assert_eq!(got, after, "the messages are the log's rows");
    assert!(second.next_within(Duration::from_millis(300)).await.is_none(), "nothing twice");
}

#[tokio::test]
async fn a_slow_socket_is_closed_while_the_others_keep_receiving() {
    // A queue of 32 messages: the slow socket backs up after ~45 events of 256 KiB (the
    // network buffers take about a dozen), while the fast one, read as the events come,
    // stays far from it.
    let app = TestApp::spawn_streaming_with(|c| c.notifier.socket_buffer = 32).await;
    let hub = app.hub.clone().unwrap();
    let u = app.register("firehose").await;
    let hook = webhook(&app, &u, "hook").await;

    let mut fast = Socket::connect(&app, Some(&u.token)).await;
    fast.subscribe(json!({"type": "subscribe", "entity_types": ["event"]})).await;
    let mut slow = Socket::connect_with(
        &app,
        Connect { bearer: Some(&u.token), receive_buffer: Some(4096), ..Connect::default() },
    )
    .await;
    slow.subscribe(json!({"type": "subscribe", "entity_types": ["event"]})).await;
    assert_eq!(hub.sockets(), 2);

    // Big events, until the socket that never reads has backed up through the network
    // buffers and its queue.
    let pad = "x".repeat(256 * 1024);
    let firing = async {
        let mut fired = Vec::new();
        for n in 0..200 {
            fired.push(app.fire(&hook, json!({"n": n, "pad": pad})).await);
            if hub.sockets() == 1 {
                break;
            }
        }
        assert_eq!(hub.sockets(), 1, "the slow socket was dropped from the hub");
        fired.push(app.fire(&hook, json!({"last": true})).await);
        fired
    };
    let receiving = async {
        let mut got = Vec::new();
        loop {
            let m = fast.change().await;
            got.push(m["entity_id"].as_i64().unwrap());
            if m["data"]["payload"]["last"] == true {
                return got;
            }
        }
    };
    let (fired, got) = tokio::join!(firing, receiving);
    assert_eq!(got, fired, "the fast socket got every event, in order");

    let (code, reason) = slow.closed().await;
    assert_eq!(code, 4008, "{reason}");
    assert!(reason.contains("too slow") && reason.contains("since"), "{reason}");
    assert!(matches!(slow.next_within(Duration::from_secs(5)).await, None | Some(Received::Closed(_))));
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attune_serves_the_stream_on_the_api_port_or_alone_on_the_notifier_port() {
    let app = TestApp::spawn().await;
    let u = app.register("remote").await;
    let hook = webhook(&app, &u, "hook").await;
    // With the API: on the API's port. Alone: on notifier.port.
    for (services, port_variable) in [("api,notifier", "ATTUNE_API_PORT"), ("notifier", "ATTUNE_NOTIFIER_PORT")] {
        let port = free_port();
        let mut env = app.process_env();
        env.insert(port_variable.into(), port.to_string());
        let spec = Spec { args: vec!["serve".into(), services.into()], env, as_pid_one: false };
        let mut process = ServiceProcess::start(&spec);
        tokio::task::block_in_place(|| process.wait_for_log("streaming the change log", Duration::from_secs(60)));

        let addr = format!("127.0.0.1:{port}");
        let mut ws = Socket::connect_at(&addr, Connect { bearer: Some(&u.token), ..Connect::default() }).await;
        ws.subscribe(json!({"type": "subscribe", "entity_types": ["event"]})).await;
        let event = app.fire(&hook, json!({"via": services})).await;
        let m = ws.change().await;
        assert_eq!((m["event"].as_str(), m["entity_id"].as_i64()), (Some("event.created"), Some(event)), "{m}");

        // SIGTERM: the socket is told to come back, and the process drains and exits 0.
        let stopping = tokio::task::spawn_blocking(move || process.terminate(Duration::from_secs(30)));
        let (code, reason) = ws.closed().await;
        assert_eq!(code, 1001, "{services}: {reason}");
        assert!(reason.contains("since"), "{reason}");
        assert_eq!(stopping.await.unwrap(), Some(0), "{services} exits 0 after its drain");
    }
}

#[tokio::test]
async fn the_change_log_keeps_its_retention_and_since_replays_what_is_left() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("retained").await;
    let hook = webhook(&app, &u, "hook").await;
    sqlx::query(
        "INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
         SELECT $1, 'event', g, 'event.created', attune.change_other('{}') FROM generate_series(1, 7) g",
    )
    .bind(u.tenant_id)
    .execute(app.pool())
    .await
    .unwrap();
    // The change log is kept 24 h, in partitions of 12 h: thirteen hours on, the
    // maintenance opens the next partition; the webhook's event is written there.
    let hours = |h: i64| chrono::Utc::now() + chrono::Duration::hours(h);
    let change_log = [attune_core::history::Family::ChangeLog];
    assert!(app.maintain_history(&change_log, hours(13)).await.is_empty(), "nothing is out of its window yet");
    let kept = app.fire(&hook, json!({"recent": true})).await;
    // A day and more after that cut, the first partition goes whole; the second stays.
    let outcomes = app.maintain_history(&change_log, hours(38)).await;
    assert_eq!(
        outcomes.iter().map(|o| (o.partition.as_str(), o.dropped)).collect::<Vec<_>>(),
        [("change_log_p0", true)]
    );
    let left = logged(&app, u.tenant_id, 0).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["entity_id"], kept);

    let mut ws = Socket::connect(&app, Some(&u.token)).await;
    ws.subscribe(json!({"type": "subscribe", "since": 0})).await;
    assert_eq!(ws.change().await, left[0], "since replays what is still retained");
    assert!(ws.next_within(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn an_execution_token_streams_while_its_execution_runs() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("exec_token").await;
    let run = app.post(&u, "/api/v1/executions", json!({"action": "core.sleep", "parameters": {"seconds": 2}})).await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    let id = run.body["id"].as_i64().unwrap();
    eventually("the execution to run", Duration::from_secs(30), || async {
        (app.get(&u, &format!("/api/v1/executions/{id}")).await.body["status"] == "running").then_some(())
    })
    .await;
    let token = app.ctx.tokens.issue_execution_token(u.tenant_id, id, 600);

    let mut ws = Socket::connect(&app, Some(&token)).await;
    ws.subscribe(json!({"type": "subscribe", "entity_types": ["execution"], "entity_id": id})).await;
    let (code, reason) = ws.closed().await;
    assert_eq!(code, 4401, "the token ends with its execution: {reason}");
    assert!(reason.contains(&format!("execution {id}")), "{reason}");

    // Once the execution has ended, the token opens nothing.
    let mut ws = Socket::connect(&app, Some(&token)).await;
    assert_eq!(ws.closed().await.0, 4401);
}

#[tokio::test]
async fn a_hub_without_sockets_parks_and_the_next_socket_resumes_it_missing_nothing() {
    // The pipeline with a hub of the test's own that parks after 300 ms without sockets.
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("parker").await;
    let hub = attune_notifier::Hub::parking_after(app.ctx.clone(), Duration::from_millis(300));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let router = hub.router();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (reader, stop) = (hub.clone(), app.shutdown.clone());
    tokio::spawn(async move { reader.run(stop).await });
    hub.ready().await;
    let connect = || Socket::connect_at(&addr, Connect { bearer: Some(&u.token), ..Connect::default() });

    // A socket comes and goes: the hub follows the log while it is there.
    let mut ws = connect().await;
    ws.subscribe(json!({"type": "subscribe"})).await;
    run_noop(&app, &u).await;
    settled(&app, u.tenant_id).await;
    let seen_log = logged(&app, u.tenant_id, 0).await;
    let last = seen_log.last().unwrap()["id"].as_i64().unwrap();
    assert_eq!(changes_through(&mut ws, last).await, seen_log);
    assert!(hub.following());
    drop(ws);

    // Nobody listens: it parks, and stays parked while changes come.
    eventually("the hub to park", Duration::from_secs(10), || async { (!hub.following()).then_some(()) }).await;
    join_all((0..3).map(|_| run_noop(&app, &u))).await;
    settled(&app, u.tenant_id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!hub.following(), "a parked hub reads nothing, however many changes come");

    // The next socket resumes it: what came while it was parked from the replay, then
    // live — nothing missed, nothing twice.
    let mut back = connect().await;
    back.subscribe(json!({"type": "subscribe", "since": last})).await;
    assert!(hub.following(), "a registration waits for the hub to follow again");
    join_all((0..2).map(|_| run_noop(&app, &u))).await;
    settled(&app, u.tenant_id).await;
    let after = logged(&app, u.tenant_id, last).await;
    assert!(after.len() >= 5 * 3, "the parked period's changes and the live ones: {}", after.len());
    let got = changes_through(&mut back, after.last().unwrap()["id"].as_i64().unwrap()).await;
    assert_eq!(got, after, "no gap, no duplicate, in order");
    assert!(back.next_within(Duration::from_millis(300)).await.is_none(), "nothing twice");
}
