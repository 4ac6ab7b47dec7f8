//! Templates that read the datastore (API.md "Templates", "Datastore"): `datastore.KEY`
//! and `secret.KEY` in rule criteria and action parameters, read fresh for every batch of
//! events, secrets sealed wherever they land, a tenant's items invisible to other tenants.

use std::time::Duration;

use attune_tests::{eventually, TestApp, User};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A pack `pack` with a webhook trigger `pack.hook`; returns the webhook URL.
async fn pack_with_webhook(app: &TestApp, u: &User, pack: &str) -> String {
    assert_eq!(app.post(u, "/api/v1/packs", json!({"ref": pack, "version": "1.0.0"})).await.status, 201);
    let t = app.post(u, "/api/v1/triggers", json!({"ref": format!("{pack}.hook"), "type": "webhook"})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    t.body["webhook_url"].as_str().unwrap().to_string()
}

async fn create(app: &TestApp, u: &User, path: &str, body: Value) {
    let a = app.post(u, path, body.clone()).await;
    assert_eq!(a.status, 201, "{path} {body}: {:?}", a.body);
}

async fn put_item(app: &TestApp, u: &User, item: Value) {
    let a = app.post(u, "/api/v1/datastore", item.clone()).await;
    assert!(a.status == 201 || a.status == 200, "{item}: {:?}", a.body);
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

/// The one enforcement of `rule` on `event_id`.
async fn enforcement_of(app: &TestApp, u: &User, event_id: i64, rule: &str) -> Value {
    let all = enforcements_of(app, u, event_id).await;
    all.into_iter().find(|e| e["rule_ref"] == rule).unwrap_or_else(|| panic!("no enforcement of {rule}"))
}

/// The finished execution an enforcement created.
async fn execution_of(app: &TestApp, u: &User, enforcement: &Value) -> Value {
    let id = enforcement["execution_id"].as_i64().unwrap_or_else(|| panic!("no execution: {enforcement}"));
    app.finished_execution(u, id).await
}

#[tokio::test]
async fn t2_5_criteria_compare_against_a_datastore_threshold() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("thresholds").await;
    let url = pack_with_webhook(&app, &u, "p").await;
    put_item(&app, &u, json!({"key": "threshold", "value": 50})).await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.over", "trigger": "p.hook", "action": "core.noop",
        "criteria": "{{ trigger.data.value > datastore.threshold }}"}),
    )
    .await;

    let low = app.fire(&url, json!({"value": 10})).await;
    assert!(enforcements_of(&app, &u, low).await.is_empty(), "10 is not over 50");
    let high = app.fire(&url, json!({"value": 90})).await;
    let matched = enforcements_of(&app, &u, high).await;
    assert_eq!(matched.len(), 1, "90 is over 50");
    assert_eq!(execution_of(&app, &u, &matched[0]).await["status"], "succeeded");

    // The rule did not change, so its cache entry stays; the value is read again.
    put_item(&app, &u, json!({"key": "threshold", "value": 95})).await;
    let again = app.fire(&url, json!({"value": 90})).await;
    assert!(enforcements_of(&app, &u, again).await.is_empty(), "90 is not over 95");
    assert_eq!(app.get(&u, "/api/v1/executions").await.body["total"], 1);
}

/// Prints the SHA-256 of the `token` parameter it got on stdin, and whether it also got it
/// in its environment: never the value itself.
const TOKEN_DIGEST: &str = r#"
import hashlib, json, os, sys
doc = json.loads(sys.stdin.read())
token = doc["parameters"].get("token")
print(json.dumps({"sha256": hashlib.sha256(str(token).encode()).hexdigest(),
                  "in_env": "ATTUNE_PARAM_TOKEN" in os.environ, "note": doc["parameters"].get("note")}))
"#;

#[tokio::test]
async fn a_secret_parameter_reaches_the_action_on_stdin_and_is_sealed_everywhere_else() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("secret_params").await;
    let url = pack_with_webhook(&app, &u, "p").await;
    let secret = "tok-7f3a9c-very-secret";
    put_item(&app, &u, json!({"key": "api_token", "value": secret, "encrypted": true})).await;
    create(&app, &u, "/api/v1/actions", json!({"ref": "p.call", "runner_type": "python", "code": TOKEN_DIGEST})).await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.call_api", "trigger": "p.hook", "action": "p.call",
        "action_params": {"token": "{{ secret.api_token }}", "note": "{{ datastore.api_token }}",
                          "id": "{{ trigger.data.id }}"}}),
    )
    .await;
    // The same secret into an integer parameter: refused, and the message does not quote it.
    create(
        &app,
        &u,
        "/api/v1/actions",
        json!({"ref": "p.typed", "runner_type": "shell", "command": "true",
        "parameters": {"token": {"type": "integer"}}}),
    )
    .await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.typed_call", "trigger": "p.hook", "action": "p.typed",
        "action_params": {"token": "{{ secret.api_token }}"}}),
    )
    .await;

    let event = app.fire(&url, json!({"id": 7})).await;
    let ex = execution_of(&app, &u, &enforcement_of(&app, &u, event, "p.call_api").await).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let digest = hex::encode(Sha256::digest(secret.as_bytes()));
    assert_eq!(ex["result"]["output"]["sha256"], digest, "the action got the decrypted value: {ex}");
    assert_eq!(ex["result"]["output"]["in_env"], false, "a secret parameter is not in the environment");
    assert_eq!(ex["result"]["output"]["note"], "********", "datastore.KEY of an encrypted item is masked");
    assert_eq!(ex["parameters"]["token"], "********", "the API shows the parameter masked");
    assert_eq!(ex["parameters"]["id"], 7);
    let execution_id = ex["id"].as_i64().unwrap();
    let (row, sealed): (String, Option<Vec<u8>>) =
        sqlx::query_as("SELECT e::text, e.secret_params FROM attune.execution e WHERE e.id = $1")
            .bind(execution_id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(!row.contains(secret), "the stored execution does not hold the value: {row}");
    let sealed = sealed.expect("the parameter is in the sealed blob");
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()), "sealed, not plain");

    let refused = execution_of(&app, &u, &enforcement_of(&app, &u, event, "p.typed_call").await).await;
    assert_eq!(refused["status"], "failed");
    let error = refused["result"]["error"].as_str().unwrap();
    assert!(error.contains("parameter token") && error.contains("\"********\""), "quoted, then redacted: {error}");
    assert!(!error.contains(secret) && !refused.to_string().contains(secret), "{refused}");
    let everything: String = sqlx::query_scalar(
        "SELECT string_agg(x, ' ') FROM (SELECT e::text AS x FROM attune.execution e
                                         UNION ALL SELECT f::text FROM attune.enforcement f
                                         UNION ALL SELECT a::text FROM attune.audit_log a) t",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert!(!everything.contains(secret), "no execution, enforcement or audit row holds the value");
}

#[tokio::test]
async fn a_secret_that_cannot_be_decrypted_fails_only_the_enforcements_that_read_it() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("broken_secret").await;
    let url = pack_with_webhook(&app, &u, "p").await;
    for key in ["good", "moved"] {
        put_item(&app, &u, json!({"key": key, "value": format!("value of {key}"), "encrypted": true})).await;
    }
    // Another item's ciphertext: it does not decrypt for this one.
    sqlx::query(
        "UPDATE attune.datastore_item SET ciphertext = (SELECT ciphertext FROM attune.datastore_item WHERE key = 'good')
          WHERE key = 'moved'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.reads_moved", "trigger": "p.hook", "action": "core.noop",
        "action_params": {"x": "{{ secret.moved }}"}}),
    )
    .await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.criteria_moved", "trigger": "p.hook", "action": "core.noop",
        "criteria": "secret.moved == 'x'"}),
    )
    .await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.masked_only", "trigger": "p.hook", "action": "core.echo",
        "action_params": {"message": "{{ datastore.moved }}"}}),
    )
    .await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.reads_good", "trigger": "p.hook", "action": "core.noop",
        "criteria": "{{ secret.good == 'value of good' }}"}),
    )
    .await;

    let event = app.fire(&url, json!({})).await;
    for rule in ["p.reads_moved", "p.criteria_moved"] {
        let failed = enforcement_of(&app, &u, event, rule).await;
        assert_eq!(failed["status"], "failed", "{failed}");
        let error = failed["error"].as_str().unwrap();
        assert!(error.contains(rule) && error.contains("\"moved\""), "names the rule and the key: {error}");
    }
    let masked = execution_of(&app, &u, &enforcement_of(&app, &u, event, "p.masked_only").await).await;
    assert_eq!(masked["result"]["stdout"], "********\n", "datastore.KEY needs no decryption");
    let good = enforcement_of(&app, &u, event, "p.reads_good").await;
    assert_eq!(good["status"], "processed", "the batch went on: {good}");
}

#[tokio::test]
async fn a_missing_key_renders_null() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("missing_keys").await;
    let url = pack_with_webhook(&app, &u, "p").await;
    put_item(&app, &u, json!({"key": "brief", "value": "gone soon", "ttl_seconds": 1})).await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.on_missing", "trigger": "p.hook", "action": "core.noop",
        "criteria": "{{ datastore.absent }}"}),
    )
    .await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.on_missing_eq", "trigger": "p.hook", "action": "core.noop",
        "criteria": "secret.absent.deeper == 'x' or datastore['absent'] == 'x'"}),
    )
    .await;
    create(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "p.params", "trigger": "p.hook", "action": "core.noop",
        "action_params": {"a": "{{ datastore.absent }}", "b": "{{ secret.absent }}", "c": "{{ datastore.brief }}",
                          "d": "{{ datastore['absent'] }}", "e": "x={{ datastore.absent }}"}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let event = app.fire(&url, json!({})).await;
    let all = enforcements_of(&app, &u, event).await;
    assert_eq!(all.len(), 1, "false criteria, no enforcement: {all:?}");
    let ex = execution_of(&app, &u, &all[0]).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["parameters"],
        json!({"a": null, "b": "********", "c": null, "d": null, "e": "x="}),
        "missing and expired keys are null; a parameter reading a secret is sealed"
    );
    let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT secret_params FROM attune.execution WHERE id = $1")
        .bind(ex["id"].as_i64().unwrap())
        .fetch_one(app.pool())
        .await
        .unwrap();
    let secrets = attune_core::execution::unseal_secrets(&app.ctx.keys.encryption, sealed.as_deref()).unwrap();
    assert_eq!(secrets.get("b"), Some(&Value::Null), "secret.absent is null too");
}

#[tokio::test]
async fn a_rule_reads_only_its_own_tenants_items() {
    let app = TestApp::spawn_pipeline().await;
    let alice = app.register("tenant_a").await;
    let bob = app.register("tenant_b").await;
    let url_a = pack_with_webhook(&app, &alice, "pa").await;
    let url_b = pack_with_webhook(&app, &bob, "pb").await;
    put_item(&app, &alice, json!({"key": "shared", "value": "alice's"})).await;
    put_item(&app, &alice, json!({"key": "my-key", "value": "alice's dashed"})).await;
    put_item(&app, &alice, json!({"key": "token", "value": "alice-token-value", "encrypted": true})).await;
    let params = json!({"plain": "{{ datastore.shared }}", "dashed": "{{ datastore['my-key'] }}",
                        "token": "{{ secret.token }}", "found": "{{ secret.token is defined }}"});
    for (user, pack) in [(&alice, "pa"), (&bob, "pb")] {
        create(
            &app,
            user,
            "/api/v1/rules",
            json!({"ref": format!("{pack}.reads"), "trigger": format!("{pack}.hook"),
            "action": "core.noop", "action_params": params}),
        )
        .await;
    }
    // Both batches may be one: the engine loads each tenant's items for its own rules.
    let event_a = app.fire(&url_a, json!({})).await;
    let event_b = app.fire(&url_b, json!({})).await;

    let a = execution_of(&app, &alice, &enforcement_of(&app, &alice, event_a, "pa.reads").await).await;
    assert_eq!(a["parameters"]["plain"], "alice's");
    assert_eq!(a["parameters"]["dashed"], "alice's dashed", "a key read by subscript");
    assert_eq!(a["parameters"]["token"], "********");
    assert_eq!(a["parameters"]["found"], "********", "it reads a secret, so it is sealed too");
    let b = execution_of(&app, &bob, &enforcement_of(&app, &bob, event_b, "pb.reads").await).await;
    assert_eq!(b["status"], "succeeded", "{b}");
    assert_eq!(b["parameters"]["plain"], Value::Null, "tenant B does not see tenant A's item: {b}");
    assert_eq!(b["parameters"]["dashed"], Value::Null);
    let id = b["id"].as_i64().unwrap();
    let row: String = sqlx::query_scalar("SELECT e::text FROM attune.execution e WHERE e.id = $1")
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert!(!row.contains("alice"), "{row}");
    let plain: Value = sqlx::query_scalar("SELECT parameters FROM attune.execution WHERE id = $1")
        .bind(id)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(plain["token"], "********");
    let unsealed = attune_core::execution::unseal_parameters(
        &app.ctx.keys.encryption,
        &plain,
        sqlx::query_scalar::<_, Option<Vec<u8>>>("SELECT secret_params FROM attune.execution WHERE id = $1")
            .bind(id)
            .fetch_one(app.pool())
            .await
            .unwrap()
            .as_deref(),
    )
    .unwrap();
    assert_eq!(
        (&unsealed["token"], &unsealed["found"]),
        (&Value::Null, &json!(false)),
        "B's secret.token is undefined"
    );
}
