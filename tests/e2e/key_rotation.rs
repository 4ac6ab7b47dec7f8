//! Key rotation (`attune keys new|rotate|status`): every sealed value — encrypted datastore
//! items and executions' secret parameters — re-sealed under a new key version while the
//! services run and actions read; resumable; a value of an unknown version fails naming it.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attune_core::bootstrap::Keys;
use attune_core::keyring::Keyring;
use attune_core::{Context, Shutdown};
use attune_tests::processes::attune_binary;
use attune_tests::{eventually, TestApp, User};
use serde_json::{json, Value};

const ITEMS: usize = 150;

/// Runs `attune keys ARGS` against the app's database with the `keys` keyring; (exit code, stdout, stderr).
fn attune_keys(app: &TestApp, keys: &Keyring, args: &[&str]) -> (i32, String, String) {
    let mut env: HashMap<String, String> = app.process_env();
    let (current, previous) = keys.formatted();
    env.insert("ATTUNE_ENCRYPTION_KEY".into(), current);
    env.insert("ATTUNE_ENCRYPTION_PREVIOUS_KEYS".into(), previous.join(","));
    let out = Command::new(attune_binary())
        .arg("keys")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&env)
        .output()
        .expect("attune keys runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The API, executor and worker of a deployment that holds `keys`, on `app`'s database.
async fn services_with(app: &TestApp, keys: Keyring, shutdown: &Shutdown) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = (*app.ctx.config).clone();
    config.api.port = listener.local_addr().unwrap().port();
    config.api.public_url = Some(url.clone());
    let ctx = Context::new(
        config,
        app.pool().clone(),
        Keys { jwt_secret: app.ctx.keys.jwt_secret.clone(), encryption: keys },
    );
    tokio::spawn(attune_api::serve(ctx.clone(), listener, shutdown.clone()));
    tokio::spawn(attune_executor::run(ctx.clone(), shutdown.clone()));
    tokio::spawn(attune_worker::run(ctx, shutdown.clone()));
    url
}

async fn get(http: &reqwest::Client, url: &str, user: &User, path: &str) -> (u16, Value) {
    let res = http.get(format!("{url}{path}")).bearer_auth(&user.token).send().await.expect("the API answers");
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

async fn post(http: &reqwest::Client, url: &str, user: &User, path: &str, body: Value) -> (u16, Value) {
    let res = http.post(format!("{url}{path}")).bearer_auth(&user.token).json(&body).send().await.expect("answers");
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// How many sealed values each key version holds, per kind (from SQL, not the CLI).
async fn versions(app: &TestApp) -> (HashMap<i32, i64>, HashMap<i32, i64>) {
    let items: Vec<(i32, i64)> =
        sqlx::query_as("SELECT key_version, count(*) FROM attune.datastore_item WHERE encrypted GROUP BY 1")
            .fetch_all(app.pool())
            .await
            .unwrap();
    let params: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT ('x' || encode(substring(secret_params FROM 3 FOR 4), 'hex'))::bit(32)::int, count(*)
           FROM attune.execution WHERE secret_params IS NOT NULL GROUP BY 1",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    (items.into_iter().collect(), params.into_iter().collect())
}

/// Reverses a string: what the action prints instead of a secret (secrets are masked in output).
fn rev(s: &str) -> String {
    s.chars().rev().collect()
}

#[tokio::test]
async fn rotation_under_load_keeps_every_value_readable() {
    // Version 1: the app as it was before the rotation.
    let app = TestApp::spawn().await;
    let admin = app.register("rotator").await;
    assert_eq!(app.post(&admin, "/api/v1/packs", json!({"ref": "rot", "version": "1"})).await.status, 201);
    for i in 0..ITEMS {
        let put = json!({"key": format!("k{i}"), "value": format!("value-{i}"), "encrypted": true});
        assert_eq!(app.post(&admin, "/api/v1/datastore", put).await.status, 201);
    }
    let code = r#"
import json, sys
doc = json.loads(sys.stdin.read())
print(json.dumps({"secrets": {k: v[::-1] for k, v in doc["secrets"].items()}, "pw": doc["parameters"]["pw"][::-1]}))
"#;
    let action = json!({"ref": "rot.read", "runner_type": "python", "code": code,
                        "secrets": ["k0", "k1", "k2", "k39"],
                        "parameters": {"pw": {"type": "string", "secret": true, "required": true}}});
    assert_eq!(app.post(&admin, "/api/v1/actions", action).await.status, 201);
    // Sealed under version 1 and not run yet (no scheduler here): the rotation re-seals them.
    let mut pending = Vec::new();
    for i in 0..5 {
        let run = app
            .post(&admin, "/api/v1/executions", json!({"action": "rot.read", "parameters": {"pw": format!("pw-{i}")}}))
            .await;
        assert_eq!(run.status, 201, "{:?}", run.body);
        pending.push((run.body["id"].as_i64().unwrap(), format!("pw-{i}")));
    }
    assert_eq!(versions(&app).await, (HashMap::from([(1, ITEMS as i64)]), HashMap::from([(1, 5)])));

    // Version 2 becomes current; version 1 is kept for reading. The new deployment runs.
    let old = app.ctx.keys.encryption.clone();
    let (v1, _) = old.formatted();
    let rotated = Keyring::new((2, Keyring::random_key()), [Keyring::parse_key(&v1).unwrap()]).unwrap();
    let shutdown = app.shutdown.child_token();
    let url = services_with(&app, rotated.clone(), &shutdown).await;
    let http = reqwest::Client::new();

    // A partial run first (resumable): two batches of 5, then it stops and says so.
    let (code, out, err) = attune_keys(&app, &rotated, &["rotate", "--batch-size", "5", "--max-batches", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("re-sealed 10 datastore items") && out.contains("run it again"), "{out}");
    assert_eq!(versions(&app).await.0, HashMap::from([(1, ITEMS as i64 - 10), (2, 10)]));

    // Readers: the API and actions read every value while the rest is re-sealed.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (http, url, admin, done) = (http.clone(), url.clone(), admin.clone(), done.clone());
        tokio::spawn(async move {
            let mut reads = 0usize;
            let mut runs = Vec::new();
            while !done.load(Ordering::SeqCst) || reads < 2 * ITEMS {
                for i in 0..ITEMS {
                    let (status, body) = get(&http, &url, &admin, &format!("/api/v1/datastore/k{i}")).await;
                    assert_eq!((status, body["value"].clone()), (200, json!(format!("value-{i}"))), "k{i}: {body}");
                    reads += 1;
                }
                let body = json!({"action": "rot.read", "parameters": {"pw": format!("during-{reads}")}});
                let (status, run) = post(&http, &url, &admin, "/api/v1/executions", body).await;
                assert_eq!(status, 201, "{run}");
                runs.push((run["id"].as_i64().unwrap(), format!("during-{reads}")));
            }
            runs
        })
    };
    let rotation = {
        let rotated = rotated.clone();
        let app_env = app.process_env();
        tokio::task::spawn_blocking(move || {
            let (current, previous) = rotated.formatted();
            let out = Command::new(attune_binary())
                .args(["keys", "rotate", "--batch-size", "3"])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(&app_env)
                .env("ATTUNE_ENCRYPTION_KEY", current)
                .env("ATTUNE_ENCRYPTION_PREVIOUS_KEYS", previous.join(","))
                .output()
                .expect("attune keys rotate runs");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let (code, out, err) = rotation.await.unwrap();
    done.store(true, Ordering::SeqCst);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains(&format!("re-sealed {} datastore items", ITEMS - 10)), "{out}");
    let runs = reader.await.expect("every read during the rotation saw the right value");

    // Every execution — sealed before, during and after the rotation — got its values.
    for (id, pw) in pending.iter().chain(runs.iter()) {
        let ex = eventually(&format!("execution {id}"), Duration::from_secs(60), || {
            let (http, url, admin) = (http.clone(), url.clone(), admin.clone());
            async move {
                let (_, ex) = get(&http, &url, &admin, &format!("/api/v1/executions/{id}")).await;
                matches!(ex["status"].as_str(), Some("succeeded" | "failed")).then_some(ex)
            }
        })
        .await;
        assert_eq!(ex["status"], "succeeded", "{ex}");
        assert_eq!(ex["result"]["output"]["pw"], json!(rev(pw)), "{ex}");
        assert_eq!(ex["result"]["output"]["secrets"]["k39"], json!(rev("value-39")), "{ex}");
    }
    let (items, params) = versions(&app).await;
    assert_eq!(items, HashMap::from([(2, ITEMS as i64)]), "every item is under version 2");
    assert!(params.keys().all(|v| *v == 2), "every secret-parameter blob is under version 2: {params:?}");

    // Status says so; a second rotation has nothing to do.
    let (code, out, err) = attune_keys(&app, &rotated, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("current key version: 2") && out.contains(&format!("version   2: {ITEMS}")), "{out}");
    assert!(!out.contains("version   1:"), "{out}");
    let (code, out, _) = attune_keys(&app, &rotated, &["rotate"]);
    assert_eq!(code, 0);
    assert!(out.contains("re-sealed 0 datastore items and the secret parameters of 0 executions"), "{out}");

    // A deployment that only has version 1 cannot read version 2 and says which version it lacks.
    let (status, body) = get(&http, &app.url, &admin, "/api/v1/datastore/k0").await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("key version 2"), "{body}");
    // Nor can a rotation that lacks it: it names the version, leaves the values alone and fails.
    let (code, _, err) = attune_keys(&app, &Keyring::new((3, Keyring::random_key()), []).unwrap(), &["rotate"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("key version 2") && err.contains("could not be opened"), "{err}");
    assert_eq!(versions(&app).await.0, HashMap::from([(2, ITEMS as i64)]));
    shutdown.cancel();
}

#[tokio::test]
async fn keys_new_in_the_data_dir_keeps_the_old_key_for_reading() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(attune_binary())
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ATTUNE_DATA_DIR", dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut config = attune_tests::test_config(dir.path());
    config.datastore.encryption_key = None;
    let first = Keys::load_or_generate(&config).unwrap().encryption;
    assert_eq!(first.current_version(), 1);
    let (code, out, err) = run(&["keys", "new"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("key version 2 is now current"), "{out}");
    let second = Keys::load_or_generate(&config).unwrap().encryption;
    assert_eq!((second.current_version(), second.versions()), (2, "1, 2".to_string()));
    let sealed = first.seal_tagged(b"before");
    assert_eq!(second.open_tagged(&sealed).unwrap(), b"before", "the old key still reads");
    let (code, out, _) = run(&["keys", "new"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("key version 3"), "{out}");
    assert_eq!(Keys::load_or_generate(&config).unwrap().encryption.versions(), "1, 2, 3");

    // With the key in the environment, nothing is written: the settings to use are printed.
    let key = Keyring::format_key(4, &Keyring::random_key());
    let out = Command::new(attune_binary())
        .args(["keys", "new"])
        .env_clear()
        .env("ATTUNE_DATA_DIR", dir.path())
        .env("ATTUNE_ENCRYPTION_KEY", &key)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("ATTUNE_ENCRYPTION_KEY=v5:"), "{stdout}");
    assert!(stdout.contains(&format!("ATTUNE_ENCRYPTION_PREVIOUS_KEYS={key}")), "{stdout}");
    // A malformed key is refused, naming the setting.
    let out = Command::new(attune_binary())
        .args(["keys", "status"])
        .env_clear()
        .env("ATTUNE_DATA_DIR", dir.path())
        .env("ATTUNE_ENCRYPTION_PREVIOUS_KEYS", "v2:tooshort")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ATTUNE_ENCRYPTION_PREVIOUS_KEYS"));
}
