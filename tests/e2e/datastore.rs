//! The datastore (T1.6, T3.27): scoped key/value items with a time to live, encrypted
//! values sealed per item at rest, read by actions through their execution token.

use std::time::Duration;

use attune_tests::TestApp;
use serde_json::{json, Value};

#[tokio::test]
async fn t1_6_action_reads_a_value_from_the_datastore() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("kv_reader").await;
    let put = app.post(&u, "/api/v1/datastore", json!({"key": "api_url", "value": "https://api.example.com"})).await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "kv", "version": "1"})).await.status, 201);
    // The action asks the API with its own execution token (context.api_token).
    let code = r#"
import json, sys, urllib.request
doc = json.loads(sys.stdin.read())
ctx = doc["context"]
req = urllib.request.Request(ctx["api_url"] + "/api/v1/datastore/" + doc["parameters"]["key"],
                             headers={"Authorization": "Bearer " + ctx["api_token"]})
item = json.load(urllib.request.urlopen(req, timeout=10))
print(json.dumps({"value": item["value"]}))
"#;
    let action = json!({"ref": "kv.read", "runner_type": "python", "code": code,
                        "parameters": {"key": {"type": "string", "required": true}}});
    assert_eq!(app.post(&u, "/api/v1/actions", action).await.status, 201);
    let run = app.post(&u, "/api/v1/executions", json!({"action": "kv.read", "parameters": {"key": "api_url"}})).await;
    let ex = app.finished_execution(&u, run.body["id"].as_i64().unwrap()).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["output"]["value"], "https://api.example.com");
}

#[tokio::test]
async fn t3_27_encrypted_values_are_ciphertext_at_rest_and_plaintext_only_to_who_may_see_them() {
    let app = TestApp::spawn_pipeline().await;
    let admin = app.register("kv_admin").await;
    let viewer = app.add_user(&admin, "kv_viewer", "viewer").await;
    let put = json!({"key": "password", "value": "s3cret-value", "encrypted": true});
    assert_eq!(app.post(&admin, "/api/v1/datastore", put.clone()).await.status, 201);
    let (value, first): (Option<Value>, Vec<u8>) =
        sqlx::query_as("SELECT value, ciphertext FROM attune.datastore_item WHERE key = 'password'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(value.is_none(), "no plaintext column holds it");
    assert!(!first.windows(12).any(|w| w == b"s3cret-value"), "the ciphertext does not contain the value");
    let again = app.post(&admin, "/api/v1/datastore", put).await;
    assert_eq!(again.status, 200, "a replace: {:?}", again.body);
    let second: Vec<u8> = sqlx::query_scalar("SELECT ciphertext FROM attune.datastore_item WHERE key = 'password'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_ne!(first, second, "two writes of one value differ (fresh nonce)");

    assert_eq!(app.get(&admin, "/api/v1/datastore/password").await.body["value"], "s3cret-value");
    assert_eq!(app.get(&viewer, "/api/v1/datastore/password").await.body["value"], "********");
    let list = app.get(&admin, "/api/v1/datastore").await;
    assert_eq!(list.body["data"][0]["value"], "********", "lists mask unless asked");
    assert_eq!(app.get(&admin, "/api/v1/datastore?decrypt=true").await.body["data"][0]["value"], "s3cret-value");
    assert_eq!(app.get(&viewer, "/api/v1/datastore?decrypt=true").await.status, 403);
    assert_eq!(app.post(&viewer, "/api/v1/datastore", json!({"key": "x", "value": 1})).await.status, 403);

    // An action that declares the key receives it decrypted, on stdin only.
    assert_eq!(app.post(&admin, "/api/v1/packs", json!({"ref": "kv", "version": "1"})).await.status, 201);
    let command = r#"doc=$(cat); case "$doc" in *'"password":"s3cret-value"'*) echo received;; *) echo missing;; esac"#;
    let action = json!({"ref": "kv.uses_secret", "runner_type": "shell", "command": command, "secrets": ["password"]});
    assert_eq!(app.post(&admin, "/api/v1/actions", action).await.status, 201);
    let run = app.post(&admin, "/api/v1/executions", json!({"action": "kv.uses_secret"})).await;
    let ex = app.finished_execution(&admin, run.body["id"].as_i64().unwrap()).await;
    assert_eq!(ex["result"]["stdout"], "received\n", "{ex}");

    // Writes are audited without the value.
    let audit = app.get(&admin, "/api/v1/audit?entity_type=datastore_item").await;
    let entries = audit.body["data"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e["data"].get("value").is_none() && e["data"]["key"] == "password"), "{entries:?}");
    assert!(!audit.body.to_string().contains("s3cret-value"));
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_item_or_tampered_with_fails_clearly() {
    let app = TestApp::spawn().await;
    let u = app.register("kv_mover").await;
    for key in ["a", "b"] {
        let put = json!({"key": key, "value": format!("value of {key}"), "encrypted": true});
        assert_eq!(app.post(&u, "/api/v1/datastore", put).await.status, 201);
    }
    sqlx::query(
        "UPDATE attune.datastore_item SET ciphertext = (SELECT ciphertext FROM attune.datastore_item WHERE key = 'a')
          WHERE key = 'b'",
    )
    .execute(app.pool())
    .await
    .unwrap();
    let moved = app.get(&u, "/api/v1/datastore/b").await;
    assert_eq!(moved.status, 409, "{:?}", moved.body);
    assert!(moved.body["error"]["message"].as_str().unwrap().contains("another item's ciphertext"), "{:?}", moved.body);
    sqlx::query("UPDATE attune.datastore_item SET key_version = 9 WHERE key = 'a'").execute(app.pool()).await.unwrap();
    let unknown = app.get(&u, "/api/v1/datastore/a").await;
    assert!(unknown.body["error"]["message"].as_str().unwrap().contains("key version 9"), "{:?}", unknown.body);
}

#[tokio::test]
async fn items_are_scoped_to_their_tenant_and_user_and_expire() {
    let app = TestApp::spawn().await;
    let alice = app.register("kv_alice").await;
    let bob = app.register("kv_bob").await;
    let carol = app.add_user(&alice, "kv_carol", "editor").await;
    assert_eq!(app.post(&alice, "/api/v1/datastore", json!({"key": "shared", "value": {"n": 1}})).await.status, 201);
    let mine = json!({"key": "mine", "value": [1, 2], "scope": "user"});
    assert_eq!(app.post(&alice, "/api/v1/datastore", mine).await.status, 201);

    assert_eq!(app.get(&bob, "/api/v1/datastore/shared").await.status, 404, "another tenant's item is missing");
    assert_eq!(app.get(&bob, "/api/v1/datastore").await.body["total"], 0);
    assert_eq!(app.get(&carol, "/api/v1/datastore/shared").await.body["value"], json!({"n": 1}), "the tenant's");
    assert_eq!(app.get(&carol, "/api/v1/datastore/mine?scope=user").await.status, 404, "another user's item");
    assert_eq!(app.get(&alice, "/api/v1/datastore/mine?scope=user").await.body["value"], json!([1, 2]));
    assert_eq!(app.delete(&bob, "/api/v1/datastore/shared").await.status, 404);

    let short = json!({"key": "brief", "value": "soon gone", "ttl_seconds": 1});
    let put = app.post(&alice, "/api/v1/datastore", short).await;
    assert_eq!(put.status, 201);
    assert!(put.body["expires_at"].is_string());
    assert_eq!(app.get(&alice, "/api/v1/datastore/brief").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(app.get(&alice, "/api/v1/datastore/brief").await.status, 404, "expired: gone at once");
    assert_eq!(app.get(&alice, "/api/v1/datastore?prefix=br").await.body["total"], 0);
    let relived = app.post(&alice, "/api/v1/datastore", json!({"key": "brief", "value": "back"})).await;
    assert_eq!(relived.status, 200, "an expired key can be written again");
    // The executor's maintenance purges expired rows later (readers ignore them already).
    let gone = json!({"key": "gone", "value": 1, "ttl_seconds": 1});
    assert_eq!(app.post(&alice, "/api/v1/datastore", gone).await.status, 201);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(attune_executor::maintenance::round(app.pool()).await.unwrap() >= 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.datastore_item WHERE key = 'gone'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "purged");

    assert_eq!(app.post(&alice, "/api/v1/datastore", json!({"key": "", "value": 1})).await.status, 422);
    assert_eq!(
        app.post(&alice, "/api/v1/datastore", json!({"key": "t", "value": 1, "ttl_seconds": 0})).await.status,
        422
    );
    assert_eq!(app.delete(&alice, "/api/v1/datastore/shared").await.status, 204);
    assert_eq!(app.get(&alice, "/api/v1/datastore/shared").await.status, 404);
}

#[tokio::test]
async fn python_actions_write_and_read_the_datastore_with_the_helper_module() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("kv_helper").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "kvh", "version": "1"})).await.status, 201);
    let writer = r#"
from attune import datastore, AttuneError
def run(params):
    datastore.set("report", {"rows": params["rows"]}, ttl_seconds=3600)
    datastore.set("api_password", "pw-" + str(params["rows"]), encrypted=True)
    try:
        datastore.set("bad", 1, ttl_seconds=0)
        refused = None
    except AttuneError as e:
        refused = e.status
    return {"refused": refused, "missing": datastore.get("nothing-here")}
"#;
    let reader = r#"
import os
from attune import datastore
def run(params):
    report = datastore.get("report")
    password = datastore.get("api_password")
    deleted = datastore.delete("report")
    return {"report": report, "password_reversed": password[::-1], "deleted": deleted,
            "deleted_again": datastore.delete("report"),
            "token_in_env": any("api_token" in k.lower() or v.count(".") == 2 for k, v in os.environ.items())}
"#;
    for (name, code) in [("write", writer), ("read", reader)] {
        let action = json!({"ref": format!("kvh.{name}"), "runner_type": "python", "code": code});
        assert_eq!(app.post(&u, "/api/v1/actions", action).await.status, 201);
    }
    let run = app.post(&u, "/api/v1/executions", json!({"action": "kvh.write", "parameters": {"rows": 7}})).await;
    let ex = app.finished_execution(&u, run.body["id"].as_i64().unwrap()).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["output"], json!({"refused": 422, "missing": null}), "{ex}");
    // What A wrote persists in the database (and the encrypted value only as ciphertext).
    let stored: Value = sqlx::query_scalar("SELECT value FROM attune.datastore_item WHERE key = 'report'")
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(stored, json!({"rows": 7}));
    let sealed: Option<Value> =
        sqlx::query_scalar("SELECT value FROM attune.datastore_item WHERE key = 'api_password'")
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert!(sealed.is_none(), "the encrypted item has no plaintext column");

    let run = app.post(&u, "/api/v1/executions", json!({"action": "kvh.read"})).await;
    let ex = app.finished_execution(&u, run.body["id"].as_i64().unwrap()).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let out = &ex["result"]["output"];
    assert_eq!(out["report"], json!({"rows": 7}), "{ex}");
    assert_eq!(out["password_reversed"], "7-wp", "the helper decrypts for the execution's token: {ex}");
    assert_eq!((out["deleted"].clone(), out["deleted_again"].clone()), (json!(true), json!(false)));
    assert_eq!(out["token_in_env"], false, "the token is not in the environment: {ex}");
    assert_eq!(app.get(&u, "/api/v1/datastore/report").await.status, 404);
}
