//! The event pipeline end to end: webhook → event → rule → enforcement → execution →
//! worker → result, over real HTTP, a real database and real child processes.

use std::time::Duration;

use attune_tests::{eventually, TestApp, User};
use serde_json::{json, Value};

/// A pack `p` with a webhook trigger `p.hook`; returns the webhook URL.
async fn pack_with_webhook(app: &TestApp, u: &User) -> String {
    assert_eq!(app.post(u, "/api/v1/packs", json!({"ref": "p", "version": "1.0.0"})).await.status, 201);
    let t = app.post(u, "/api/v1/triggers", json!({"ref": "p.hook", "type": "webhook"})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    t.body["webhook_url"].as_str().unwrap().to_string()
}

async fn action(app: &TestApp, u: &User, body: Value) {
    let a = app.post(u, "/api/v1/actions", body.clone()).await;
    assert_eq!(a.status, 201, "{body}: {:?}", a.body);
}

async fn rule(app: &TestApp, u: &User, body: Value) -> i64 {
    let r = app.post(u, "/api/v1/rules", body.clone()).await;
    assert_eq!(r.status, 201, "{body}: {:?}", r.body);
    r.body["id"].as_i64().unwrap()
}

/// The enforcements of an event once the rule engine has processed it.
async fn enforcements_of(app: &TestApp, u: &User, event_id: i64) -> Vec<Value> {
    eventually(&format!("event {event_id} to be processed"), Duration::from_secs(30), || async {
        let e = app.get(u, &format!("/api/v1/events/{event_id}")).await;
        e.body["processed_at"].is_string().then_some(())
    })
    .await;
    let list = app.get(u, &format!("/api/v1/enforcements?event={event_id}")).await;
    list.body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn t1_4_webhook_payload_reaches_action() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("hooked").await;
    let url = pack_with_webhook(&app, &u).await;
    action(&app, &u, json!({
        "ref": "p.echo_payload", "runner_type": "python",
        "code": "import json\ndef run(params):\n    print('got', params['payload']['email'])\n    return {'received': params['payload'], 'user': params['user_id']}\n",
        "parameters": {"payload": {"type": "object", "required": true}, "user_id": {"type": "integer", "required": true}}
    }))
    .await;
    rule(
        &app,
        &u,
        json!({"ref": "p.on_signup", "trigger": "p.hook", "action": "p.echo_payload",
        "action_params": {"payload": "{{ trigger.data }}", "user_id": "{{ trigger.data.user_id }}"}}),
    )
    .await;

    let payload = json!({"event_type": "user.signup", "user_id": 12345, "email": "test@example.com",
                         "metadata": {"source": "web", "campaign": "spring2024"}});
    let event_id = app.fire(&url, payload.clone()).await;
    let event = app.get(&u, &format!("/api/v1/events/{event_id}")).await;
    assert_eq!(event.body["payload"], payload, "the event holds the POST body");
    assert_eq!(event.body["trigger_ref"], "p.hook");

    let enforcements = enforcements_of(&app, &u, event_id).await;
    assert_eq!(enforcements.len(), 1);
    assert_eq!(enforcements[0]["status"], "processed");
    let execution_id = enforcements[0]["execution_id"].as_i64().unwrap();
    let ex = app.finished_execution(&u, execution_id).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["parameters"]["payload"], payload);
    assert_eq!(ex["parameters"]["user_id"], 12345, "a single {{ expr }} keeps its JSON type");
    assert_eq!(ex["result"]["output"]["received"], payload, "the action saw the webhook data");
    assert_eq!(ex["result"]["output"]["user"], 12345);
    assert!(ex["result"]["stdout"].as_str().unwrap().contains("got test@example.com"));
    assert_eq!(ex["result"]["exit_code"], 0);
    assert_eq!(ex["rule_ref"], "p.on_signup");
    assert!(ex["worker"].as_str().is_some_and(|w| !w.is_empty()));
    for stamp in ["created_at", "scheduled_at", "started_at", "finished_at"] {
        assert!(ex[stamp].is_string(), "{stamp} is stamped: {ex}");
    }
}

#[tokio::test]
async fn t1_8_failed_action_records_exit_code_and_stderr_without_retry() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("failing").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "f", "version": "1"})).await.status, 201);
    action(
        &app,
        &u,
        json!({"ref": "f.boom", "runner_type": "python",
        "code": "import sys\nprint('Starting action...', file=sys.stderr)\nsys.exit(1)\n"}),
    )
    .await;
    let run = app.post(&u, "/api/v1/executions", json!({"action": "f.boom"})).await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    assert_eq!(run.body["status"], "requested");
    let id = run.body["id"].as_i64().unwrap();
    let ex = app.finished_execution(&u, id).await;
    assert_eq!(ex["status"], "failed");
    assert_eq!(ex["result"]["exit_code"], 1);
    assert!(ex["result"]["stderr"].as_str().unwrap().contains("Starting action..."));
    assert!(ex["result"]["error"].as_str().unwrap().contains("Starting action..."), "stderr's tail is the error");
    assert_eq!(ex["attempt"], 1);
    assert_eq!(ex["max_attempts"], 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all = app.get(&u, "/api/v1/executions?action=f.boom").await;
    assert_eq!(all.body["total"], 1, "no retry without a retry policy");
    let audit = app.get(&u, &format!("/api/v1/audit?entity_type=execution&entity_id={id}")).await;
    let trail: Vec<&str> =
        audit.body["data"].as_array().unwrap().iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(trail, ["execution.requested", "execution.scheduled", "execution.started", "execution.failed"]);

    // core.fail, a shell action, fails the same way.
    let run = app
        .post(
            &u,
            "/api/v1/executions",
            json!({"action": "core.fail", "parameters": {"message": "bad things", "exit_code": 3}}),
        )
        .await;
    let ex = app.finished_execution(&u, run.body["id"].as_i64().unwrap()).await;
    assert_eq!((ex["status"].as_str(), ex["result"]["exit_code"].as_i64()), (Some("failed"), Some(3)));
    assert_eq!(ex["result"]["error"], "bad things");
}

#[tokio::test]
async fn t2_5_rule_criteria_decide_which_events_run() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("critic").await;
    let url = pack_with_webhook(&app, &u).await;
    rule(&app, &u, json!({"ref": "p.critical", "trigger": "p.hook", "action": "core.echo",
        "criteria": "{{ trigger.data.status == \"critical\" }}", "action_params": {"message": "{{ trigger.data.status }}"}}))
    .await;
    let info = app.fire(&url, json!({"status": "info"})).await;
    let critical = app.fire(&url, json!({"status": "critical"})).await;
    assert!(enforcements_of(&app, &u, info).await.is_empty(), "no enforcement when the criteria are false");
    let matched = enforcements_of(&app, &u, critical).await;
    assert_eq!(matched.len(), 1);
    let ex = app.finished_execution(&u, matched[0]["execution_id"].as_i64().unwrap()).await;
    assert_eq!(ex["result"]["stdout"], "critical\n");
    assert_eq!(app.get(&u, "/api/v1/executions").await.body["total"], 1);
    assert_eq!(app.get(&u, "/api/v1/events?trigger=p.hook").await.body["total"], 2, "both webhooks made events");

    // Richer criteria: lists, numbers, missing fields.
    rule(
        &app,
        &u,
        json!({"ref": "p.envs", "trigger": "p.hook", "action": "core.noop",
        "criteria": "trigger.data.environment in ['prod', 'staging'] and trigger.data.count > 100"}),
    )
    .await;
    let yes = app.fire(&url, json!({"environment": "prod", "count": 101})).await;
    let no = app.fire(&url, json!({"environment": "dev", "count": 500})).await;
    let missing = app.fire(&url, json!({})).await;
    assert_eq!(enforcements_of(&app, &u, yes).await.len(), 1);
    assert!(enforcements_of(&app, &u, no).await.is_empty());
    assert!(enforcements_of(&app, &u, missing).await.is_empty(), "a missing field is false, not an error");
}

#[tokio::test]
async fn t3_4_one_event_fires_every_matching_rule() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("fanout").await;
    let url = pack_with_webhook(&app, &u).await;
    for i in 0..3 {
        rule(
            &app,
            &u,
            json!({"ref": format!("p.r{i}"), "trigger": "p.hook", "action": "core.echo",
            "action_params": {"message": format!("rule {i}: {{{{ trigger.data.n }}}}")}}),
        )
        .await;
    }
    let event = app.fire(&url, json!({"n": 7})).await;
    let enforcements = enforcements_of(&app, &u, event).await;
    assert_eq!(enforcements.len(), 3);
    let mut outputs = Vec::new();
    for e in &enforcements {
        let ex = app.finished_execution(&u, e["execution_id"].as_i64().unwrap()).await;
        assert_eq!(ex["status"], "succeeded");
        outputs.push(ex["result"]["stdout"].as_str().unwrap().to_string());
    }
    outputs.sort();
    assert_eq!(outputs, ["rule 0: 7\n", "rule 1: 7\n", "rule 2: 7\n"], "every rule saw the same payload");
    assert_eq!(app.get(&u, "/api/v1/events").await.body["total"], 1);
}

#[tokio::test]
async fn t3_5_criteria_filter_between_rules() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("filters").await;
    let url = pack_with_webhook(&app, &u).await;
    rule(&app, &u, json!({"ref": "p.a", "trigger": "p.hook", "action": "core.noop", "criteria": "{{ trigger.data.level == 'info' }}"})).await;
    rule(&app, &u, json!({"ref": "p.b", "trigger": "p.hook", "action": "core.noop", "criteria": "{{ trigger.data.level == 'error' }}"})).await;
    let rules_of = |e: Vec<Value>| e.iter().map(|x| x["rule_ref"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let info = app.fire(&url, json!({"level": "info"})).await;
    assert_eq!(rules_of(enforcements_of(&app, &u, info).await), ["p.a"]);
    let error = app.fire(&url, json!({"level": "error"})).await;
    assert_eq!(rules_of(enforcements_of(&app, &u, error).await), ["p.b"]);
    let debug = app.fire(&url, json!({"level": "debug"})).await;
    assert!(enforcements_of(&app, &u, debug).await.is_empty());
}

#[tokio::test]
async fn t3_13_invalid_parameters_fail_before_any_worker() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("strict").await;
    let url = pack_with_webhook(&app, &u).await;
    action(
        &app,
        &u,
        json!({"ref": "p.fetch", "runner_type": "shell", "command": "echo should-not-run",
        "parameters": {"url": {"type": "string", "required": true}, "retries": {"type": "integer", "default": 1}}}),
    )
    .await;
    rule(&app, &u, json!({"ref": "p.no_url", "trigger": "p.hook", "action": "p.fetch", "action_params": {"retries": "{{ trigger.data.n }}"}}))
        .await;
    let event = app.fire(&url, json!({"n": 2})).await;
    let enforcements = enforcements_of(&app, &u, event).await;
    let ex = app.finished_execution(&u, enforcements[0]["execution_id"].as_i64().unwrap()).await;
    assert_eq!(ex["status"], "failed");
    assert_eq!(ex["result"]["error"], "missing required parameter: url");
    assert!(ex["started_at"].is_null() && ex["worker"].is_null(), "never sent to a worker: {ex}");

    // A manual run with invalid parameters is a 422 naming the parameter and creates nothing.
    let before = app.get(&u, "/api/v1/executions").await.body["total"].as_i64().unwrap();
    let bad = app.post(&u, "/api/v1/executions", json!({"action": "p.fetch", "parameters": {"retries": "many"}})).await;
    assert_eq!(bad.status, 422);
    let message = bad.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("missing required parameter: url") && message.contains("retries"), "{message}");
    assert_eq!(app.get(&u, "/api/v1/executions").await.body["total"].as_i64().unwrap(), before);
    let unknown = app.post(&u, "/api/v1/executions", json!({"action": "p.nope"})).await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn t3_21_large_output_is_cut_at_the_limit_with_a_marker() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("chatty").await;
    let run = app
        .post(
            &u,
            "/api/v1/executions",
            json!({"action": "core.local",
        "parameters": {"cmd": "head -c 10000000 /dev/zero | tr '\\0' x; echo done >&2"}}),
        )
        .await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    let ex = app.finished_execution(&u, run.body["id"].as_i64().unwrap()).await;
    assert_eq!(ex["status"], "succeeded", "a large output does not fail the execution");
    let stdout = ex["result"]["stdout"].as_str().unwrap();
    assert!(stdout.ends_with("... (output truncated)"), "{}", &stdout[stdout.len() - 40..]);
    assert_eq!(stdout.len(), 1_048_576 + "\n... (output truncated)".len());
    assert_eq!(ex["result"]["truncated"], true);
    assert_eq!(ex["result"]["stderr"], "done\n");
    let stored: i64 = sqlx::query_scalar(
        "SELECT pg_column_size(stdout)::bigint FROM attune.execution_output WHERE execution_id = $1",
    )
    .bind(ex["id"].as_i64().unwrap())
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(stored <= 1_100_000, "the database row stays bounded: {stored} bytes");
}

#[tokio::test]
async fn t3_22_execution_history_pagination() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("historian").await;
    let mut created = Vec::new();
    for i in 0..100 {
        let r = app
            .post(&u, "/api/v1/executions", json!({"action": "core.echo", "parameters": {"message": format!("n{i}")}}))
            .await;
        assert_eq!(r.status, 201);
        created.push(r.body["id"].as_i64().unwrap());
    }
    let mut seen = Vec::new();
    for page in 0..5 {
        let a = app.get(&u, &format!("/api/v1/executions?action=core.echo&limit=20&offset={}", page * 20)).await;
        assert_eq!(a.body["total"], 100);
        let ids: Vec<i64> = a.body["data"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
        assert_eq!(ids.len(), 20);
        seen.extend(ids);
    }
    created.reverse();
    assert_eq!(seen, created, "newest first, no duplicates, no gaps");
    assert_eq!(app.get(&u, "/api/v1/executions?status=exploded").await.status, 400);
}

#[tokio::test]
async fn t3_28_execution_audit_trail() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("audited").await;
    let run = app.post(&u, "/api/v1/executions", json!({"action": "core.echo", "parameters": {"message": "hi"}})).await;
    let id = run.body["id"].as_i64().unwrap();
    let ex = app.finished_execution(&u, id).await;
    assert_eq!(ex["status"], "succeeded");
    assert_eq!(ex["result"]["output"], json!({"message": "hi"}), "core.echo returns its message as output");
    assert_eq!(ex["result"]["stdout"], "hi\n");
    let audit = app.get(&u, &format!("/api/v1/audit?entity_type=execution&entity_id={id}")).await;
    let entries: Vec<&Value> = audit.body["data"].as_array().unwrap().iter().rev().collect();
    let trail: Vec<(&str, &str)> =
        entries.iter().map(|e| (e["action"].as_str().unwrap(), e["actor"]["type"].as_str().unwrap())).collect();
    assert_eq!(
        trail,
        [
            ("execution.requested", "user"),
            ("execution.scheduled", "service"),
            ("execution.started", "worker"),
            ("execution.succeeded", "worker")
        ]
    );
    assert_eq!(entries[0]["actor"]["login"], "audited");
    assert_eq!(entries[2]["actor"]["id"], ex["worker"]);
    let stamps: Vec<&str> = entries.iter().map(|e| e["timestamp"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "in time order: {stamps:?}");
}

/// Manual runs are scheduled by the API in their own transaction; the scheduler takes what
/// another writer leaves `requested` (an API of an earlier version during a rolling upgrade,
/// a row inserted by hand): it admits each with the same rules — defaults applied, then
/// run — or fails it naming the bad parameter, without a worker.
#[tokio::test]
async fn executions_another_writer_left_requested_are_admitted_by_the_scheduler() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("leftover").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "p", "version": "1.0.0"})).await.status, 201);
    action(
        &app,
        &u,
        json!({"ref": "p.greet", "runner_type": "shell", "command": "echo \"$ATTUNE_PARAM_WHO\"",
               "parameters": {"who": {"type": "string", "default": "world"}, "n": {"type": "integer"}}}),
    )
    .await;
    let insert = |parameters: Value| {
        let (pool, tenant) = (app.pool().clone(), u.tenant_id);
        async move {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO attune.execution (tenant_id, action_id, action_ref, runner_type, parameters)
                 SELECT $1, id, ref, runner_type, $2 FROM attune.action WHERE ref = 'p.greet' AND tenant_id = $1
                 RETURNING id",
            )
            .bind(tenant)
            .bind(parameters)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let good = insert(json!({})).await;
    let bad = insert(json!({"n": "not a number"})).await;
    // Inserted by hand, nobody poked the scheduler: it finds them on its own.
    let ran = app.finished_execution(&u, good).await;
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert_eq!(ran["parameters"], json!({"who": "world"}), "defaults applied: {ran}");
    assert_eq!(ran["result"]["stdout"], "world\n", "{ran}");
    let refused = app.finished_execution(&u, bad).await;
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(refused["worker"].is_null(), "never reached a worker: {refused}");
    let error = refused["result"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("parameter n: "), "names the parameter: {error}");
    let audit = app.get(&u, &format!("/api/v1/audit?entity_type=execution&entity_id={good}")).await;
    let trail: Vec<&str> =
        audit.body["data"].as_array().unwrap().iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(trail, ["execution.scheduled", "execution.started", "execution.succeeded"]);
}

#[tokio::test]
async fn an_event_no_rule_matches_is_processed_and_creates_nothing() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("lonely").await;
    let url = pack_with_webhook(&app, &u).await;
    let event = app.fire(&url, json!({"x": 1})).await;
    assert!(enforcements_of(&app, &u, event).await.is_empty());
    assert_eq!(app.get(&u, "/api/v1/executions").await.body["total"], 0);
}

#[tokio::test]
async fn a_disabled_rule_creates_nothing_and_disabling_takes_effect_at_once() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("switch").await;
    let url = pack_with_webhook(&app, &u).await;
    let id = rule(&app, &u, json!({"ref": "p.r", "trigger": "p.hook", "action": "core.noop", "enabled": false})).await;
    let off = app.fire(&url, json!({})).await;
    assert!(enforcements_of(&app, &u, off).await.is_empty());

    assert_eq!(app.patch(&u, &format!("/api/v1/rules/{id}"), json!({"enabled": true})).await.status, 200);
    let on = app.fire(&url, json!({})).await;
    assert_eq!(enforcements_of(&app, &u, on).await.len(), 1);

    // Disable, then fire at once: the engine sees the change, whenever its NOTIFY lands.
    for _ in 0..5 {
        assert_eq!(app.patch(&u, &format!("/api/v1/rules/{id}"), json!({"enabled": false})).await.status, 200);
        let off = app.fire(&url, json!({})).await;
        assert!(enforcements_of(&app, &u, off).await.is_empty());
        assert_eq!(app.patch(&u, &format!("/api/v1/rules/{id}"), json!({"enabled": true})).await.status, 200);
        let on = app.fire(&url, json!({})).await;
        assert_eq!(enforcements_of(&app, &u, on).await.len(), 1);
    }
}

#[tokio::test]
async fn webhook_ingress_checks_key_signature_and_body() {
    let app = TestApp::spawn().await;
    let u = app.register("ingress").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "w", "version": "1"})).await.status, 201);
    let signed = app
        .post(&u, "/api/v1/triggers", json!({"ref": "w.signed", "type": "webhook", "webhook_secret": "topsecret"}))
        .await;
    let url = signed.body["webhook_url"].as_str().unwrap().to_string();
    let body = br#"{"a":1}"#.to_vec();
    let sig = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"topsecret").unwrap();
        mac.update(&body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut req = app.http.post(&url).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(post(vec![], body.clone()).await.0, 401, "unsigned");
    assert_eq!(post(vec![("x-attune-signature", "sha256=00".into())], body.clone()).await.0, 401, "wrong signature");
    let (status, accepted) = post(vec![("x-attune-signature", sig.clone())], body.clone()).await;
    assert_eq!(status, 202, "{accepted}");
    assert!(accepted["event_id"].as_i64().is_some());
    assert_eq!(
        post(vec![("x-attune-signature", sig)], br#"{"a":2}"#.to_vec()).await.0,
        401,
        "signature of another body"
    );
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.event").fetch_one(app.pool()).await.unwrap();
    assert_eq!(events, 1, "only the signed request became an event");

    let open = app.post(&u, "/api/v1/triggers", json!({"ref": "w.open", "type": "webhook"})).await;
    let open_url = open.body["webhook_url"].as_str().unwrap();
    let res = app.http.post(open_url).body("not json").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = app
        .http
        .post(open_url)
        .header("content-type", "application/json")
        .body(vec![b' '; 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let res =
        app.http.post(format!("{}/api/v1/webhooks/{}", app.url, "0".repeat(64))).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let events = app.get(&u, "/api/v1/events").await;
    assert_eq!(events.body["total"], 1, "only the accepted delivery made an event");
}

/// Values PostgreSQL cannot store (NUL characters) and disabled actions never stall the
/// pipeline or surface as 500s.
#[tokio::test]
async fn nul_characters_and_disabled_actions_are_handled_cleanly() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("edgy").await;
    let url = pack_with_webhook(&app, &u).await;

    // An action printing NUL bytes: its result is stored (NUL replaced), the next one runs.
    let run = app
        .post(&u, "/api/v1/executions", json!({"action": "core.local", "parameters": {"cmd": "printf 'a\\000b\\n'; printf '{\"k\": \"x\\\\u0000y\"}\\n'"}}))
        .await;
    let ex = app.finished_execution(&u, run.body["id"].as_i64().unwrap()).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert!(ex["result"]["stdout"].as_str().unwrap().starts_with("a\u{FFFD}b"), "{ex}");
    assert_eq!(ex["result"]["output"]["k"], "x\u{FFFD}y");

    // A rule rendering a NUL fails its enforcement, naming the problem; the engine goes on.
    rule(&app, &u, json!({"ref": "p.nul", "trigger": "p.hook", "action": "core.echo", "action_params": {"message": "{{ '\\x00' }}"}})).await;
    let event = app.fire(&url, json!({})).await;
    let enforcements = enforcements_of(&app, &u, event).await;
    assert_eq!(enforcements[0]["status"], "failed");
    assert!(enforcements[0]["error"].as_str().unwrap().contains("NUL"), "{:?}", enforcements[0]);
    let after = app.fire(&url, json!({})).await;
    assert_eq!(enforcements_of(&app, &u, after).await.len(), 1, "later events are processed");

    // A NUL in a request body is a 400, not a 500.
    let res = app
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"a": "x\u0000y"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let bad =
        app.post(&u, "/api/v1/executions", json!({"action": "core.echo", "parameters": {"message": "x\u{0}y"}})).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);

    // A disabled action neither runs by hand nor through its rules.
    action(&app, &u, json!({"ref": "p.off", "runner_type": "shell", "command": "true", "enabled": false})).await;
    let refused = app.post(&u, "/api/v1/executions", json!({"action": "p.off"})).await;
    assert_eq!(refused.status, 409);
    assert!(refused.body["error"]["message"].as_str().unwrap().contains("disabled"));
    rule(&app, &u, json!({"ref": "p.to_off", "trigger": "p.hook", "action": "p.off"})).await;
    let event = app.fire(&url, json!({})).await;
    let rules: Vec<String> =
        enforcements_of(&app, &u, event).await.iter().map(|e| e["rule_ref"].as_str().unwrap().to_string()).collect();
    assert!(!rules.contains(&"p.to_off".to_string()), "{rules:?}");
}

/// The API keeps the actions manual runs name between requests (one look-up less per run,
/// `crates/api/src/action_cache.rs`), yet each run is admitted on the action as it is now:
/// disabled, enabled again, its parameters changed, its roles narrowed — each takes effect
/// at the next request; and what one tenant's runs read is never another's.
#[tokio::test]
async fn a_manual_run_sees_its_action_as_it_is_now() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("cached").await;
    pack_with_webhook(&app, &u).await;
    let made =
        app.post(&u, "/api/v1/actions", json!({"ref": "p.kept", "runner_type": "shell", "command": "true"})).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let path = format!("/api/v1/actions/{}", made.body["id"].as_i64().unwrap());
    let run = |params: Value| {
        let (app, u) = (&app, &u);
        async move { app.post(u, "/api/v1/executions", json!({"action": "p.kept", "parameters": params})).await }
    };
    assert_eq!(run(json!({})).await.status, 201);
    assert_eq!(run(json!({})).await.status, 201, "run again (from the kept action)");

    assert_eq!(app.patch(&u, &path, json!({"enabled": false})).await.status, 200);
    let refused = run(json!({})).await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(run(json!({})).await.status, 409, "refused again, on the kept (now current) action");
    assert_eq!(app.patch(&u, &path, json!({"enabled": true})).await.status, 200);
    assert_eq!(run(json!({})).await.status, 201);

    let schema = json!({"parameters": {"n": {"type": "integer", "required": true}}});
    assert_eq!(app.patch(&u, &path, schema).await.status, 200);
    let invalid = run(json!({})).await;
    assert_eq!(invalid.status, 422, "{:?}", invalid.body);
    assert!(invalid.body["error"]["message"].as_str().unwrap().contains('n'), "{:?}", invalid.body);
    assert_eq!(run(json!({"n": 1})).await.status, 201);

    assert_eq!(app.patch(&u, &path, json!({"run_roles": ["admin"]})).await.status, 200);
    let runner = app.add_user(&u, "runner", "executor").await;
    let forbidden = app.post(&runner, "/api/v1/executions", json!({"action": "p.kept", "parameters": {"n": 1}})).await;
    assert_eq!(forbidden.status, 403, "{:?}", forbidden.body);
    assert_eq!(run(json!({"n": 2})).await.status, 201, "the admin still may");

    // Another tenant has no action `p.kept`, whatever this one's runs kept.
    let other = app.register("elsewhere").await;
    let missing = app.post(&other, "/api/v1/executions", json!({"action": "p.kept", "parameters": {"n": 1}})).await;
    assert_eq!(missing.status, 404, "{:?}", missing.body);
}

/// A manual run whose process has an idle worker lane is created `running` on it and handed
/// over after the commit (`attune_core::handoff`), with the same trail a claim writes: the
/// change log's created → scheduled → running → succeeded, the audit's requested →
/// scheduled → started (by the worker) → succeeded, the attempt's row on that worker. A run
/// from an API without a worker in its process is claimed as before, with the same trail.
#[tokio::test]
async fn a_manual_run_is_handed_to_an_idle_lane_of_its_process_with_a_claims_trail() {
    let expected_changes: Vec<(String, String)> = [
        ("execution.created", "requested"),
        ("execution.status_changed", "scheduled"),
        ("execution.status_changed", "running"),
        ("execution.status_changed", "succeeded"),
    ]
    .map(|(e, s)| (e.to_string(), s.to_string()))
    .to_vec();
    let expected_audits: Vec<(String, String)> = [
        ("execution.requested", "user"),
        ("execution.scheduled", "service"),
        ("execution.started", "worker"),
        ("execution.succeeded", "worker"),
    ]
    .map(|(a, t)| (a.to_string(), t.to_string()))
    .to_vec();

    // One process: the API hands runs to its worker's idle lane.
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("handed").await;
    let tenant: i64 = sqlx::query_scalar("SELECT tenant_id FROM attune.identity WHERE login = 'handed'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    // A lane is idle once its first claim round found nothing; a poll round may take it
    // out of idleness for a moment: the run is tried a few times, each must succeed with
    // the whole trail, and at least one must have been handed.
    let mut handed = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let run = app.post(&u, "/api/v1/executions", json!({"action": "core.noop"})).await;
        assert_eq!(run.status, 201, "{:?}", run.body);
        let id = run.body["id"].as_i64().unwrap();
        let ex = app.finished_execution(&u, id).await;
        assert_eq!(ex["status"], "succeeded", "{ex}");
        let trail = app.trail(id).await;
        assert_eq!(trail.changes, expected_changes);
        assert_eq!(trail.audits, expected_audits);
        let worker: i64 = sqlx::query_scalar("SELECT worker_id FROM attune.execution WHERE id = $1")
            .bind(id)
            .fetch_one(app.pool())
            .await
            .unwrap();
        assert_eq!(trail.attempts, vec![(worker, tenant)], "one attempt, on the execution's worker, in its tenant");
        handed += trail.handed as usize;
    }
    assert!(handed > 0, "none of 5 runs was handed to the idle lane");

    // An API alone in its process; the worker runs in another one: claimed, the same trail.
    let api = TestApp::spawn().await;
    let u = api.register("claimed").await;
    let elsewhere = api.separate_context().await;
    tokio::spawn(attune_worker::run(elsewhere, api.shutdown.clone()));
    let run = api.post(&u, "/api/v1/executions", json!({"action": "core.noop"})).await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    let id = run.body["id"].as_i64().unwrap();
    assert_eq!(api.finished_execution(&u, id).await["status"], "succeeded");
    let trail = api.trail(id).await;
    assert_eq!((trail.changes, trail.audits), (expected_changes, expected_audits));
    assert!(!trail.handed, "claimed by the worker in a transaction of its own");
    assert_eq!(trail.attempts.len(), 1);
}

/// T3.23: canceling a running execution stops its process group (SIGTERM first, so the
/// action can clean up), keeps its partial output, and ends it `canceled`.
#[tokio::test]
async fn t3_23_execution_cancellation() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("canceler").await;
    let cmd = "trap 'echo got-term >&2; exit 143' TERM; echo started; sleep 61.4242 & wait";
    let run = app.post(&u, "/api/v1/executions", json!({"action": "core.local", "parameters": {"cmd": cmd}})).await;
    let id = run.body["id"].as_i64().unwrap();
    eventually("the execution to run", Duration::from_secs(20), || async {
        (app.get(&u, &format!("/api/v1/executions/{id}")).await.body["status"] == "running").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let viewer = app.add_user(&u, "watcher", "viewer").await;
    assert_eq!(app.post(&viewer, &format!("/api/v1/executions/{id}/cancel"), json!(null)).await.status, 403);
    let asked = app.post(&u, &format!("/api/v1/executions/{id}/cancel"), json!(null)).await;
    assert_eq!(asked.status, 202, "{:?}", asked.body);
    assert_eq!(asked.body["status"], "canceling");
    let ex = app.finished_execution(&u, id).await;
    assert_eq!(ex["status"], "canceled", "{ex}");
    assert_eq!(ex["result"]["failure_reason"], "canceled");
    assert_eq!(ex["result"]["stdout"], "started\n", "partial output is kept");
    assert!(ex["result"]["stderr"].as_str().unwrap().contains("got-term"), "SIGTERM came first: {ex}");
    let leftover = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).contains("61.4242"));
    assert!(!leftover, "no process of the action is left");
    let again = app.post(&u, &format!("/api/v1/executions/{id}/cancel"), json!(null)).await;
    assert_eq!(again.status, 409);
    assert_eq!(app.post(&u, "/api/v1/executions/99999999/cancel", json!(null)).await.status, 404);
    let audit = app.get(&u, &format!("/api/v1/audit?entity_type=execution&entity_id={id}")).await;
    let actions: Vec<&str> =
        audit.body["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions[0], "execution.canceled", "{actions:?}");
    assert!(actions.contains(&"execution.cancel_requested"));

    // Not running yet (no executor here): canceled at once.
    let idle = TestApp::spawn().await;
    let v = idle.register("early").await;
    let run = idle.post(&v, "/api/v1/executions", json!({"action": "core.noop"})).await;
    let early = idle.post(&v, &format!("/api/v1/executions/{}/cancel", run.body["id"]), json!(null)).await;
    assert_eq!(early.status, 202);
    assert_eq!(early.body["status"], "canceled");
}

/// T2.8: a failed attempt with attempts left runs again after the retry delay; the last
/// attempt's outcome is the execution's; every attempt is recorded.
#[tokio::test]
async fn t2_8_retry_policy_runs_failed_attempts_again() {
    // The attempts count in a host folder the sandbox binds read-write (any user: the
    // action runs as another, unprivileged one).
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let bound = dir.path().to_path_buf();
    let app = TestApp::spawn_pipeline_with(|c| c.sandbox.bind = vec![bound]).await;
    let u = app.register("retrier").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "r", "version": "1"})).await.status, 201);
    let counter = dir.path().join("count");
    // Fails twice, then succeeds.
    let command = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; echo attempt $n; [ $n -ge 3 ] || {{ echo boom $n >&2; exit 1; }}",
        c = counter.display()
    );
    action(
        &app,
        &u,
        json!({"ref": "r.flaky", "runner_type": "shell", "command": command,
        "retry": {"max_attempts": 3, "delay_seconds": 0.3, "backoff_multiplier": 2}}),
    )
    .await;
    let run = app.post(&u, "/api/v1/executions", json!({"action": "r.flaky"})).await;
    let id = run.body["id"].as_i64().unwrap();
    let started = std::time::Instant::now();
    let ex = app.finished_execution(&u, id).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["attempt"], 3);
    assert_eq!(ex["max_attempts"], 3);
    assert_eq!(ex["result"]["stdout"], "attempt 3\n");
    assert!(started.elapsed() >= Duration::from_millis(850), "waited 0.3 s then 0.6 s between attempts");
    let attempts: Vec<(i32, String)> =
        sqlx::query_as("SELECT attempt, status FROM attune.execution_attempt WHERE execution_id = $1 ORDER BY attempt")
            .bind(id)
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(attempts, vec![(1, "failed".into()), (2, "failed".into()), (3, "succeeded".into())]);
    let audit = app.get(&u, &format!("/api/v1/audit?entity_type=execution&entity_id={id}")).await;
    let retried = audit.body["data"].as_array().unwrap().iter().filter(|e| e["action"] == "execution.retried").count();
    assert_eq!(retried, 2);

    // Out of attempts: it ends failed after max_attempts.
    action(&app, &u, json!({"ref": "r.never", "runner_type": "shell", "command": "exit 7", "retry": {"max_attempts": 2, "delay_seconds": 0}})).await;
    let run = app.post(&u, "/api/v1/executions", json!({"action": "r.never"})).await;
    let ex = app.finished_execution(&u, run.body["id"].as_i64().unwrap()).await;
    assert_eq!(
        (ex["status"].as_str(), ex["attempt"].as_i64(), ex["result"]["exit_code"].as_i64()),
        (Some("failed"), Some(2), Some(7))
    );
}

/// An action's `concurrency` limit holds across every worker.
#[tokio::test]
async fn action_concurrency_limit_holds_across_workers() {
    let app = TestApp::spawn_pipeline().await;
    app.start_worker();
    let u = app.register("limited").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "c", "version": "1"})).await.status, 201);
    action(&app, &u, json!({"ref": "c.slow", "runner_type": "shell", "command": "sleep 0.4", "concurrency": 2})).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.post(&u, "/api/v1/executions", json!({"action": "c.slow"})).await.body["id"].as_i64().unwrap());
    }
    for id in &ids {
        assert_eq!(app.finished_execution(&u, *id).await["status"], "succeeded");
    }
    let spans: Vec<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT a.started_at, a.finished_at FROM attune.execution_attempt a JOIN attune.execution e ON e.id = a.execution_id WHERE e.action_ref = 'c.slow'",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(spans.len(), 6);
    let most =
        spans.iter().map(|(start, _)| spans.iter().filter(|(s, f)| s <= start && start < f).count()).max().unwrap();
    assert!(most <= 2, "at most 2 ran at once, saw {most}");
    assert_eq!(most, 2, "the limit is used, not just respected");
}

/// An action reaches the API with the token on its stdin (`context.api_token`): the
/// executor role in its own tenant.
#[tokio::test]
async fn actions_reach_the_api_with_their_execution_token() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("selfaware").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "t", "version": "1"})).await.status, 201);
    let code = r#"import json, sys, urllib.request
def run(params):
    ctx = json.load(sys.stdin)["context"]
    req = urllib.request.Request(ctx["api_url"] + "/auth/me", headers={"Authorization": "Bearer " + ctx["api_token"]})
    return {"me": json.load(urllib.request.urlopen(req)), "execution_id": ctx["execution_id"], "token": ctx["api_token"]}
"#;
    action(&app, &u, json!({"ref": "t.whoami", "runner_type": "python", "code": code})).await;
    let run = app.post(&u, "/api/v1/executions", json!({"action": "t.whoami"})).await;
    let id = run.body["id"].as_i64().unwrap();
    let ex = app.finished_execution(&u, id).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let me = &ex["result"]["output"]["me"];
    assert_eq!(me["role"], "executor");
    assert_eq!(me["tenant_id"], u.tenant_id);
    assert_eq!(me["login"], format!("execution/{id}"));
    assert_eq!(ex["result"]["output"]["execution_id"], id);
    // Once the execution has ended, its token no longer works.
    let token = ex["result"]["output"]["token"].as_str().unwrap();
    let after = app.call(Some(token), reqwest::Method::GET, "/auth/me", None).await;
    assert_eq!(after.status, 401, "{:?}", after.body);
    assert!(after.body["error"]["message"].as_str().unwrap().contains("no longer running"), "{:?}", after.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_refuses_a_database_that_is_not_the_servers() {
    // `attune bench` times the work from the database: pointed at another one it would
    // wait for work that never shows. It says so instead, and runs against the right one.
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("bencher").await;
    let other = attune_tests::TestDb::new().await;
    let probed = tempfile::tempdir().unwrap();
    let probe = probed.path().to_str().unwrap();
    let bench = |database_url: String| {
        let mut env = app.process_env();
        env.insert("ATTUNE_DATABASE_URL".into(), database_url);
        let args = ["bench", "--events", "3", "--concurrency", "1", "--url", &app.url, "--login", &u.login];
        // Paced, with the disk's flushes timed meanwhile in a folder of the test's.
        let paced = ["--rate", "20", "--disk-probe", probe];
        std::process::Command::new(attune_tests::processes::attune_binary())
            .args(args)
            .args(paced)
            .args(["--password", attune_tests::PASSWORD])
            .envs(env)
            .env_remove("DATABASE_URL")
            .output()
            .expect("attune bench runs")
    };
    let wrong = tokio::task::block_in_place(|| bench(other.url()));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success(), "{stderr}");
    assert!(stderr.contains("is not the one the server at"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "the message says what to change: {stderr}");

    let right = tokio::task::block_in_place(|| bench(app.db.url()));
    let stdout = String::from_utf8_lossy(&right.stdout);
    assert!(right.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&right.stderr));
    assert!(stdout.contains("failed executions:       0"), "{stdout}");
    // Where accepted → running goes: its two stages, each p50 / p99, none negative (the
    // API's clock and the database's are the same machine's).
    let stages = stdout.lines().find(|l| l.starts_with("  of which, p50 / p99:")).expect("the stages line");
    let figures: Vec<f64> = stages.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert_eq!(figures.len(), 4, "{stages}");
    assert!(figures.iter().all(|f| *f >= 0.0), "{stages}");
    assert!(figures[0] <= figures[1] && figures[2] <= figures[3], "p50 ≤ p99 in each stage: {stages}");
    // The disk's flushes during the paced run: p50 ≤ p99 ≤ max, and how many of them.
    let disk = stdout.lines().find(|l| l.starts_with("disk flushes ms:")).expect("the disk probe's line");
    assert!(disk.ends_with(&format!("every 10 ms in {probe}")), "{disk}");
    let words: Vec<&str> = disk.split_whitespace().collect();
    let after = |w: &str| {
        words.iter().position(|x| *x == w).and_then(|i| words[i + 1].trim_end_matches(';').parse::<f64>().ok())
    };
    let (p50, p99, max) = (after("p50").unwrap(), after("p99").unwrap(), after("max").unwrap());
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{disk}");
    let flushes: usize = words[words.iter().position(|x| *x == "of").unwrap() + 1].parse().unwrap();
    assert!(flushes >= 1, "{disk}");
    assert_eq!(std::fs::read_dir(probed.path()).unwrap().count(), 0, "the probe's file is gone");
}
