//! Definitions over HTTP: tenant isolation (T1.7), system packs (T3.11), row-level
//! security, pagination (T3.22), validation, packs from server paths and reloads (T3.26),
//! the audit trail of writes, request hygiene and the OpenAPI document.

use std::fs;

use attune_tests::{fixture_pack, TestApp, User};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;

async fn make_pack(app: &TestApp, user: &User, r: &str) {
    let a = app.post(user, "/api/v1/packs", json!({"ref": r, "version": "1.0.0"})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
}

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// T1.7 for definitions: another tenant's resources are invisible, and 404 by id or ref
/// for every verb.
#[tokio::test]
async fn t1_7_tenants_see_and_touch_only_their_own_definitions() {
    let app = TestApp::spawn().await;
    let a = app.register("tenant-a").await;
    let b = app.register("tenant-b").await;
    assert_ne!(a.tenant_id, b.tenant_id);
    make_pack(&app, &a, "secret_ops").await;
    let action = app
        .post(&a, "/api/v1/actions", json!({"ref": "secret_ops.deploy", "runner_type": "shell", "command": "echo"}))
        .await;
    let trigger = app.post(&a, "/api/v1/triggers", json!({"ref": "secret_ops.hook", "type": "webhook"})).await;
    let rule = app
        .post(
            &a,
            "/api/v1/rules",
            json!({"ref": "secret_ops.r", "trigger": "secret_ops.hook", "action": "secret_ops.deploy"}),
        )
        .await;
    let pack_id = app.get(&a, "/api/v1/packs/ref/secret_ops").await.body["id"].as_i64().unwrap();

    // B lists: only the system pack, none of A's.
    let packs = app.get(&b, "/api/v1/packs").await;
    let refs: Vec<&str> = packs.body["data"].as_array().unwrap().iter().map(|p| p["ref"].as_str().unwrap()).collect();
    assert_eq!(refs, vec!["core"], "{:?}", packs.body);
    assert_eq!(app.get(&b, "/api/v1/actions?pack=secret_ops").await.body["total"], 0);
    assert_eq!(app.get(&b, "/api/v1/rules").await.body["total"], 0);
    assert_eq!(app.get(&b, "/api/v1/triggers?pack=secret_ops").await.body["total"], 0);

    for (kind, id, r) in [
        ("packs", pack_id, "secret_ops"),
        ("actions", action.body["id"].as_i64().unwrap(), "secret_ops.deploy"),
        ("triggers", trigger.body["id"].as_i64().unwrap(), "secret_ops.hook"),
        ("rules", rule.body["id"].as_i64().unwrap(), "secret_ops.r"),
    ] {
        assert_eq!(app.get(&b, &format!("/api/v1/{kind}/{id}")).await.status, 404, "GET {kind}/{id}");
        assert_eq!(app.get(&b, &format!("/api/v1/{kind}/ref/{r}")).await.status, 404, "GET {kind}/ref/{r}");
        assert_eq!(
            app.patch(&b, &format!("/api/v1/{kind}/{id}"), json!({"description": "pwned"})).await.status,
            404,
            "PATCH {kind}"
        );
        assert_eq!(app.delete(&b, &format!("/api/v1/{kind}/{id}")).await.status, 404, "DELETE {kind}");
        assert_eq!(app.get(&a, &format!("/api/v1/{kind}/{id}")).await.status, 200, "the owner still sees {kind}/{id}");
    }
    // B cannot hang definitions on A's pack or use A's action in a rule.
    make_pack(&app, &b, "mine").await;
    let sneaky =
        app.post(&b, "/api/v1/actions", json!({"ref": "secret_ops.x", "runner_type": "shell", "command": "id"})).await;
    assert_eq!(sneaky.status, 422, "{:?}", sneaky.body);
    let borrow = app
        .post(&b, "/api/v1/rules", json!({"ref": "mine.r", "trigger": "secret_ops.hook", "action": "core.noop"}))
        .await;
    assert_eq!(borrow.status, 422);
    assert!(message(&borrow.body).contains("secret_ops.hook"), "{:?}", borrow.body);
    // Injection-looking refs are just refs that do not exist.
    for r in ["x'%20OR%20'1'='1", "secret_ops.deploy';--", "%27;DROP%20TABLE%20attune.action;--"] {
        let a = app.get(&b, &format!("/api/v1/actions/ref/{r}")).await;
        assert_eq!(a.status, 404, "{r}: {:?}", a.body);
    }
    assert_eq!(app.get(&a, "/api/v1/actions/ref/secret_ops.deploy").await.status, 200);
}

/// T3.11: the core pack is visible to every tenant and writable by none.
#[tokio::test]
async fn t3_11_system_packs_are_shared_and_read_only() {
    let app = TestApp::spawn().await;
    let a = app.register("sys-a").await;
    let b = app.register("sys-b").await;
    for user in [&a, &b] {
        let core = app.get(user, "/api/v1/packs/ref/core").await;
        assert_eq!(core.status, 200);
        assert_eq!(core.body["system"], true);
        let echo = app.get(user, "/api/v1/actions/ref/core.echo").await;
        assert_eq!(echo.status, 200);
        assert_eq!(echo.body["system"], true);
    }
    let core = app.get(&a, "/api/v1/packs/ref/core").await.body;
    let core_id = core["id"].as_i64().unwrap();
    let echo_id = app.get(&a, "/api/v1/actions/ref/core.echo").await.body["id"].as_i64().unwrap();
    for (method, path, body) in [
        (Method::PATCH, format!("/api/v1/packs/{core_id}"), Some(json!({"label": "mine now"}))),
        (Method::DELETE, format!("/api/v1/packs/{core_id}"), None),
        (Method::POST, "/api/v1/packs/core/reload".to_string(), None),
        (Method::PATCH, format!("/api/v1/actions/{echo_id}"), Some(json!({"description": "x"}))),
        (Method::DELETE, format!("/api/v1/actions/{echo_id}"), None),
        (
            Method::POST,
            "/api/v1/actions".to_string(),
            Some(json!({"ref": "core.evil", "runner_type": "shell", "command": "id"})),
        ),
    ] {
        let r = app.call(Some(&a.token), method.clone(), &path, body).await;
        assert_eq!(r.status, 403, "{method} {path}: {:?}", r.body);
        assert!(message(&r.body).contains("system pack"), "{:?}", r.body);
    }
    let shadow = app.post(&a, "/api/v1/packs", json!({"ref": "core", "version": "9.9.9"})).await;
    assert_eq!(shadow.status, 409, "a tenant cannot shadow a system pack: {:?}", shadow.body);
    // Tenants build on system definitions.
    make_pack(&app, &a, "mine").await;
    let t = app.post(&a, "/api/v1/triggers", json!({"ref": "mine.hook", "type": "webhook"})).await;
    assert_eq!(t.status, 201);
    let r =
        app.post(&a, "/api/v1/rules", json!({"ref": "mine.r", "trigger": "mine.hook", "action": "core.noop"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["action"], "core.noop");
    // ... and each sees only its own user packs.
    make_pack(&app, &b, "theirs").await;
    let a_refs: Vec<String> = app.get(&a, "/api/v1/packs").await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ref"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(a_refs, vec!["core".to_string(), "mine".to_string()]);
}

/// Makes the rest of `tx` run as the API's role confined to `tenant`, as the API's requests do.
async fn as_api(tx: &mut sqlx::PgConnection, tenant: i64) {
    sqlx::query("SELECT set_config('role', 'attune_api', true), set_config('attune.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(tx)
        .await
        .unwrap();
}

/// Row-level security confines the API's role even when a query has no tenant filter.
#[tokio::test]
async fn rls_blocks_cross_tenant_access_even_without_the_application_filter() {
    let app = TestApp::spawn().await;
    let a = app.register("rls-a").await;
    let b = app.register("rls-b").await;
    make_pack(&app, &a, "apack").await;
    make_pack(&app, &b, "bpack").await;

    let mut conn = sqlx::PgConnection::connect_with(&app.db.connect_options()).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    as_api(&mut tx, a.tenant_id).await;
    let refs: Vec<String> =
        sqlx::query_scalar("SELECT ref FROM attune.pack ORDER BY ref").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(refs, vec!["apack", "core"], "no WHERE clause, yet only A's and system packs");
    let identities: Vec<String> =
        sqlx::query_scalar("SELECT login FROM attune.identity").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(identities, vec!["rls-a"]);
    let touched = sqlx::query("UPDATE attune.pack SET label = 'x' WHERE ref IN ('bpack', 'core')")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_eq!(touched.rows_affected(), 0, "neither B's pack nor a system pack can be changed");
    let deleted = sqlx::query("DELETE FROM attune.pack").execute(&mut *tx).await.unwrap();
    assert_eq!(deleted.rows_affected(), 1, "only A's own pack");
    let forged = sqlx::query("INSERT INTO attune.pack (tenant_id, ref) VALUES ($1, 'planted')")
        .bind(b.tenant_id)
        .execute(&mut *tx)
        .await;
    match forged {
        Err(sqlx::Error::Database(e)) => assert_eq!(e.code().as_deref(), Some("42501"), "{e}"),
        other => panic!("writing into another tenant must fail: {other:?}"),
    }
    tx.rollback().await.unwrap();

    // An attempt row the API writes (a run handed to a worker lane of its own process) is
    // checked against its own tenant: one naming B is refused.
    let mut tx = conn.begin().await.unwrap();
    as_api(&mut tx, a.tenant_id).await;
    let attempt = sqlx::query(
        "INSERT INTO attune.execution_attempt (execution_id, attempt, tenant_id, status) VALUES (1, 1, $1, 'running')",
    )
    .bind(b.tenant_id)
    .execute(&mut *tx)
    .await;
    match attempt {
        Err(sqlx::Error::Database(e)) => assert_eq!(e.code().as_deref(), Some("42501"), "{e}"),
        other => panic!("an attempt in another tenant must be refused: {other:?}"),
    }
    tx.rollback().await.unwrap();

    // With no tenant set, the API's role sees no tenant rows at all.
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE attune_api").execute(&mut *tx).await.unwrap();
    let refs: Vec<String> = sqlx::query_scalar("SELECT ref FROM attune.pack").fetch_all(&mut *tx).await.unwrap();
    assert_eq!(refs, vec!["core"]);
    let audit_update = sqlx::query("UPDATE attune.audit_log SET action = 'x'").execute(&mut *tx).await;
    assert!(audit_update.is_err(), "the API's role may not rewrite the audit log");
    tx.rollback().await.unwrap();
}

/// T3.22's contract on definitions: pages without duplicates or gaps, accurate totals,
/// stable order, clamped and validated parameters.
#[tokio::test]
async fn t3_22_pagination_over_120_definitions_has_no_duplicates_or_gaps() {
    let app = TestApp::spawn().await;
    let u = app.register("pager").await;
    make_pack(&app, &u, "many").await;
    for i in 0..120 {
        let a = app
            .post(
                &u,
                "/api/v1/actions",
                json!({"ref": format!("many.a{i:03}"), "runner_type": "shell", "command": "true"}),
            )
            .await;
        assert_eq!(a.status, 201);
    }
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = app.get(&u, &format!("/api/v1/actions?pack=many&limit=25&offset={offset}")).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body["total"], 120);
        assert_eq!(page.body["limit"], 25);
        assert_eq!(page.body["offset"], offset);
        let data = page.body["data"].as_array().unwrap();
        if data.is_empty() {
            break;
        }
        seen.extend(data.iter().map(|a| a["ref"].as_str().unwrap().to_string()));
        offset += 25;
    }
    let expected: Vec<String> = (0..120).map(|i| format!("many.a{i:03}")).collect();
    assert_eq!(seen, expected, "every action once, in ref order");

    let clamped = app.get(&u, "/api/v1/actions?limit=5000").await;
    assert_eq!(clamped.status, 200);
    assert_eq!(clamped.body["limit"], 1000);
    let default = app.get(&u, "/api/v1/actions").await;
    assert_eq!(default.body["limit"], 50);
    assert_eq!(default.body["data"].as_array().unwrap().len(), 50);
    for bad in ["limit=0", "offset=-1", "limit=ten", "colour=blue"] {
        let a = app.get(&u, &format!("/api/v1/actions?{bad}")).await;
        assert_eq!(a.status, 400, "{bad}: {:?}", a.body);
        assert!(!message(&a.body).is_empty());
    }
}

#[tokio::test]
async fn definitions_round_trip_and_bad_input_is_a_clear_4xx() {
    let app = TestApp::spawn().await;
    let u = app.register("author").await;
    make_pack(&app, &u, "shop").await;

    let created = app
        .post(&u, "/api/v1/actions", json!({
            "ref": "shop.notify", "runner_type": "python3", "code": "def run(p): return p",
            "parameters": {"url": {"type": "string", "required": true}, "token": {"type": "string", "secret": true}},
            "timeout_seconds": 30, "retry": {"max_attempts": 2}
        }))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["runner_type"], "python", "python3 is an alias");
    assert_eq!(created.body["pack"], "shop");
    let id = created.body["id"].as_i64().unwrap();

    let dup =
        app.post(&u, "/api/v1/actions", json!({"ref": "shop.notify", "runner_type": "shell", "command": "x"})).await;
    assert_eq!(dup.status, 409);
    assert!(message(&dup.body).contains("shop.notify"));

    let patched = app
        .patch(&u, &format!("/api/v1/actions/{id}"), json!({"timeout_seconds": 60, "description": "Notifies"}))
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["id"], id);
    assert_eq!(patched.body["timeout_seconds"], 60);
    assert_eq!(patched.body["code"], "def run(p): return p", "untouched fields stay");
    let bad_patch = app.patch(&u, &format!("/api/v1/actions/{id}"), json!({"runner_type": "fortran"})).await;
    assert_eq!(bad_patch.status, 422);
    assert!(message(&bad_patch.body).contains("runner_type"));
    let rename = app.patch(&u, &format!("/api/v1/actions/{id}"), json!({"ref": "shop.other"})).await;
    assert_eq!(rename.status, 422);

    // Field-level validation names the field.
    for (body, field) in [
        (json!({"ref": "shop.a", "runner_type": "cobol"}), "runner_type"),
        (json!({"ref": "shop.a", "runner_type": "shell"}), "command"),
        (
            json!({"ref": "shop.a", "runner_type": "shell", "command": "x", "parameters": {"n": {"type": "int"}}}),
            "parameters",
        ),
        (json!({"ref": "shop.a", "runner_type": "shell", "command": "x", "timeout_seconds": 0}), "timeout_seconds"),
        (json!({"ref": "shop.a", "runner_type": "shell", "command": "x", "colour": "red"}), "colour"),
        (json!({"ref": "shop.a", "runner_type": 7, "command": "x"}), "runner_type"),
        (json!({"ref": "nosuchpack.a", "runner_type": "shell", "command": "x"}), "nosuchpack"),
        (json!({"ref": "bad ref", "runner_type": "shell", "command": "x"}), "ref"),
    ] {
        let a = app.post(&u, "/api/v1/actions", body.clone()).await;
        assert_eq!(a.status, 422, "{body}: {:?}", a.body);
        assert!(message(&a.body).contains(field), "{body}: {:?}", a.body);
    }

    // Triggers: webhook URL, secret never shown, key kept across PATCH.
    let hook = app
        .post(&u, "/api/v1/triggers", json!({"ref": "shop.order", "type": "webhook", "webhook_secret": "s3cr3t"}))
        .await;
    assert_eq!(hook.status, 201, "{:?}", hook.body);
    let url = hook.body["webhook_url"].as_str().unwrap().to_string();
    let prefix = format!("{}/api/v1/webhooks/", app.url);
    assert!(url.starts_with(&prefix), "{url}");
    assert_eq!(url.len() - prefix.len(), 64, "a 256-bit key");
    assert_eq!(hook.body["webhook_signed"], true);
    assert!(!hook.body.to_string().contains("s3cr3t"), "the secret is never returned");
    let hook_id = hook.body["id"].as_i64().unwrap();
    let again = app.patch(&u, &format!("/api/v1/triggers/{hook_id}"), json!({"description": "orders"})).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["webhook_url"], url.as_str());
    assert_eq!(again.body["webhook_signed"], true, "the secret survives a PATCH that does not name it");
    let timer = app
        .post(
            &u,
            "/api/v1/triggers",
            json!({"ref": "shop.tick", "type": "timer.cron", "parameters": {"cron": "* * *"}}),
        )
        .await;
    assert_eq!(timer.status, 422);
    assert!(message(&timer.body).contains("* * *"), "{:?}", timer.body);
    assert!(
        app.post(
            &u,
            "/api/v1/triggers",
            json!({"ref": "shop.tick", "type": "timer.interval", "parameters": {"interval_seconds": 0.5}})
        )
        .await
        .status
            == 201
    );

    // Rules: refs resolved and templates compiled at create time.
    let rule = app
        .post(
            &u,
            "/api/v1/rules",
            json!({"ref": "shop.on_order", "trigger": "shop.order", "action": "shop.notify",
            "criteria": "trigger.data.total > 100", "action_params": {"url": "{{ trigger.data.callback }}"}}),
        )
        .await;
    assert_eq!(rule.status, 201, "{:?}", rule.body);
    assert_eq!(rule.body["enabled"], true);
    let rule_id = rule.body["id"].as_i64().unwrap();
    let syntax = app
        .post(&u, "/api/v1/rules", json!({"ref": "shop.broken", "trigger": "shop.order", "action": "shop.notify", "criteria": "trigger.data.total >"}))
        .await;
    assert_eq!(syntax.status, 400, "{:?}", syntax.body);
    assert!(message(&syntax.body).contains("criteria"));
    let template = app
        .post(&u, "/api/v1/rules", json!({"ref": "shop.broken", "trigger": "shop.order", "action": "shop.notify", "action_params": {"url": "{{ oops"}}))
        .await;
    assert_eq!(template.status, 400);
    assert!(message(&template.body).contains("action_params.url"), "{:?}", template.body);
    let missing = app
        .post(&u, "/api/v1/rules", json!({"ref": "shop.broken", "trigger": "shop.order", "action": "shop.nope"}))
        .await;
    assert_eq!(missing.status, 422);
    assert!(message(&missing.body).contains("shop.nope"));
    let disabled =
        app.patch(&u, &format!("/api/v1/rules/{rule_id}"), json!({"enabled": false, "criteria": null})).await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    assert_eq!(disabled.body["enabled"], false);
    assert_eq!(disabled.body["criteria"], Value::Null);
    let retarget = app.patch(&u, &format!("/api/v1/rules/{rule_id}"), json!({"action": "core.noop"})).await;
    assert_eq!(retarget.status, 422, "a rule's trigger and action are fixed");

    // Deleting what a rule uses is refused with the rule named.
    let in_use = app.delete(&u, &format!("/api/v1/actions/{id}")).await;
    assert_eq!(in_use.status, 409);
    assert!(message(&in_use.body).contains("shop.on_order"));
    assert_eq!(app.delete(&u, &format!("/api/v1/rules/{rule_id}")).await.status, 204);
    assert_eq!(app.delete(&u, &format!("/api/v1/actions/{id}")).await.status, 204);
    assert_eq!(app.get(&u, &format!("/api/v1/actions/{id}")).await.status, 404);
}

#[tokio::test]
async fn malformed_requests_get_json_4xx_never_5xx() {
    let app = TestApp::spawn().await;
    let u = app.register("fuzzer").await;
    let url = |p: &str| format!("{}{p}", app.url);
    let send = |req: reqwest::RequestBuilder| async move {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.expect("every error is JSON");
        (status, body)
    };
    let (s, b) = send(
        app.http
            .post(url("/api/v1/packs"))
            .bearer_auth(&u.token)
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = send(app.http.post(url("/api/v1/packs")).bearer_auth(&u.token).body("ref=x")).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("Content-Type"), "{b}");
    let (s, _) = send(app.http.post(url("/api/v1/packs")).bearer_auth(&u.token).json(&json!(["a", "list"]))).await;
    assert_eq!(s, 422);
    // A body cut short is not JSON, on every route, even after a field serde would refuse:
    // 400, and 422 only for complete JSON of the wrong shape.
    for (path, cut) in [
        ("/api/v1/executions", r#"{"ref": "#),
        ("/api/v1/executions", r#"{"action": "core.noop""#),
        ("/api/v1/actions", r#"{"ref": "p.a", "runner_type": "#),
        ("/api/v1/rules", r#"{"bogus": 1,"#),
    ] {
        let req = app.http.post(url(path)).bearer_auth(&u.token).header("content-type", "application/json");
        let (s, b) = send(req.body(cut)).await;
        assert_eq!(s, 400, "{path} {cut}: {b}");
    }
    let (s, b) = send(app.http.post(url("/api/v1/executions")).bearer_auth(&u.token).json(&json!({"ref": "x"}))).await;
    assert_eq!(s, 422, "{b}");
    assert!(b["error"]["message"].as_str().unwrap().contains("unknown field `ref`"), "{b}");
    let (s, b) = send(app.http.get(url("/api/v1/actions/abc")).bearer_auth(&u.token)).await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = send(app.http.put(url("/api/v1/actions")).bearer_auth(&u.token)).await;
    assert_eq!(s, 405, "{b}");
    assert_eq!(b["error"]["code"], "method_not_allowed");
    let big = "x".repeat(1024 * 1024 + 10);
    let (s, b) = send(
        app.http
            .post(url("/api/v1/actions"))
            .bearer_auth(&u.token)
            .header("content-type", "application/json")
            .body(format!("{{\"ref\":\"{big}\"}}")),
    )
    .await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(b["error"]["code"], "payload_too_large");
    let (s, _) = send(app.http.get(url("/api/v1/packs/99999999999999999999")).bearer_auth(&u.token)).await;
    assert_eq!(s, 400);
    let (s, _) = send(app.http.get(url("/api/v1/packs/-1")).bearer_auth(&u.token)).await;
    assert_eq!(s, 404);
    // Every answer carries a request id.
    let res = app.http.get(url("/health")).send().await.unwrap();
    assert!(res.headers().get("x-request-id").is_some());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let t = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &t)
        } else {
            fs::copy(&p, &t).unwrap();
        }
    }
}

/// A pack loaded from a server directory belongs to the tenant; a reload re-reads it in
/// one transaction (T3.26's definition side).
#[tokio::test]
async fn t3_26_pack_loaded_from_a_path_reloads_transactionally() {
    let app = TestApp::spawn().await;
    let u = app.register("loader").await;
    let dir = tempfile::tempdir().unwrap();
    let pack_dir = dir.path().join("test_pack");
    copy_dir(&fixture_pack("test_pack"), &pack_dir);
    fs::write(pack_dir.join("pack.yaml"), "ref: test_pack\nversion: 1.0.0\nsystem: true\n").unwrap();

    let loaded = app.post(&u, "/api/v1/packs", json!({"path": pack_dir})).await;
    assert_eq!(loaded.status, 201, "{:?}", loaded.body);
    assert_eq!(loaded.body["system"], false, "a pack loaded by a tenant is the tenant's, whatever pack.yaml says");
    assert_eq!(app.get(&u, "/api/v1/actions?pack=test_pack").await.body["total"], 3);
    assert_eq!(app.get(&u, "/api/v1/sensors?pack=test_pack").await.body["total"], 1);
    let say_id = app.get(&u, "/api/v1/actions/ref/test_pack.say").await.body["id"].as_i64().unwrap();

    let unchanged = app.post(&u, "/api/v1/packs/test_pack/reload", json!(null)).await;
    assert_eq!(unchanged.status, 200, "{:?}", unchanged.body);
    assert_eq!(unchanged.body["changed"], false);

    fs::write(pack_dir.join("actions/say.yaml"), "ref: test_pack.say\nrunner_type: shell\ncommand: echo v2\n").unwrap();
    fs::write(pack_dir.join("pack.yaml"), "ref: test_pack\nversion: 1.1.0\n").unwrap();
    let reloaded = app.post(&u, "/api/v1/packs/test_pack/reload", json!(null)).await;
    assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
    assert_eq!(reloaded.body["changed"], true);
    assert_eq!(reloaded.body["version"], "1.1.0");
    let say = app.get(&u, "/api/v1/actions/ref/test_pack.say").await.body;
    assert_eq!(say["id"], say_id);
    assert_eq!(say["command"], "echo v2");

    // A broken directory changes nothing.
    fs::write(pack_dir.join("actions/say.yaml"), "ref: test_pack.say\nrunner_type: cobol\n").unwrap();
    let broken = app.post(&u, "/api/v1/packs/test_pack/reload", json!(null)).await;
    assert_eq!(broken.status, 422);
    assert!(message(&broken.body).contains("say.yaml") && message(&broken.body).contains("cobol"), "{:?}", broken.body);
    assert_eq!(app.get(&u, "/api/v1/actions/ref/test_pack.say").await.body["command"], "echo v2");

    let again = app.post(&u, "/api/v1/packs", json!({"path": pack_dir})).await;
    assert_eq!(again.status, 422, "{:?}", again.body);
    // Outside packs.path_roots: refused whether it exists or not; inside: a missing
    // directory is named.
    let nowhere = app.post(&u, "/api/v1/packs", json!({"path": "/no/such/dir"})).await;
    assert_eq!(nowhere.status, 403, "{:?}", nowhere.body);
    assert!(message(&nowhere.body).contains("/no/such/dir"), "{:?}", nowhere.body);
    assert!(message(&nowhere.body).contains("ATTUNE_PACK_PATH_ROOTS"), "{:?}", nowhere.body);
    let missing = dir.path().join("no-such-pack");
    let missing_answer = app.post(&u, "/api/v1/packs", json!({"path": missing})).await;
    assert_eq!(missing_answer.status, 422, "{:?}", missing_answer.body);
    assert!(message(&missing_answer.body).contains("no-such-pack"), "{:?}", missing_answer.body);
    let empty = app.post(&u, "/api/v1/packs", json!({"ref": "plain", "version": "1.0.0"})).await;
    assert_eq!(empty.status, 201);
    let nothing = app.post(&u, "/api/v1/packs/plain/reload", json!(null)).await;
    assert_eq!(nothing.status, 409, "{:?}", nothing.body);
}

/// Writes leave audit entries naming the actor; the log is admin-only.
#[tokio::test]
async fn writes_are_audited_with_their_actor() {
    let app = TestApp::spawn().await;
    let admin = app.register("auditor").await;
    let editor = app.add_user(&admin, "writer", "editor").await;
    make_pack(&app, &editor, "tracked").await;
    let action = app
        .post(&editor, "/api/v1/actions", json!({"ref": "tracked.a", "runner_type": "shell", "command": "true"}))
        .await;
    let id = action.body["id"].as_i64().unwrap();
    app.patch(&editor, &format!("/api/v1/actions/{id}"), json!({"command": "false"})).await;
    app.delete(&editor, &format!("/api/v1/actions/{id}")).await;

    let log = app.get(&admin, &format!("/api/v1/audit?entity_type=action&entity_id={id}")).await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    let actions: Vec<&str> =
        log.body["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["action.deleted", "action.updated", "action.created"], "newest first");
    let entry = &log.body["data"][2];
    assert_eq!(entry["actor"]["type"], "user");
    assert_eq!(entry["actor"]["login"], "writer");
    assert_eq!(entry["tenant_id"], admin.tenant_id);
    assert!(entry["timestamp"].as_str().is_some());
    let other = app.register("outsider").await;
    assert_eq!(app.get(&other, &format!("/api/v1/audit?entity_type=action&entity_id={id}")).await.body["total"], 0);
}

/// The OpenAPI document lists every route, and the router serves every documented one.
#[tokio::test]
async fn openapi_documents_every_route() {
    let app = TestApp::spawn().await;
    let admin = app.register("doc").await;
    let doc = app.call(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    let paths = doc.body["paths"].as_object().unwrap();
    let expected = [
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
        ("/auth/register", "post"),
        ("/auth/login", "post"),
        ("/auth/refresh", "post"),
        ("/auth/me", "get"),
        ("/api/v1/users", "post"),
        ("/api/v1/users", "get"),
        ("/api/v1/packs", "get"),
        ("/api/v1/packs", "post"),
        ("/api/v1/packs/{id}", "get"),
        ("/api/v1/packs/{id}", "patch"),
        ("/api/v1/packs/{id}", "delete"),
        ("/api/v1/packs/ref/{ref}", "get"),
        ("/api/v1/packs/{key}/reload", "post"),
        ("/api/v1/packs/upload", "post"),
        ("/api/v1/packs/install", "post"),
        ("/api/v1/actions", "get"),
        ("/api/v1/actions", "post"),
        ("/api/v1/actions/{id}", "get"),
        ("/api/v1/actions/{id}", "patch"),
        ("/api/v1/actions/{id}", "delete"),
        ("/api/v1/actions/ref/{ref}", "get"),
        ("/api/v1/triggers", "get"),
        ("/api/v1/triggers", "post"),
        ("/api/v1/triggers/{id}", "get"),
        ("/api/v1/triggers/{id}", "patch"),
        ("/api/v1/triggers/{id}", "delete"),
        ("/api/v1/triggers/ref/{ref}", "get"),
        ("/api/v1/rules", "get"),
        ("/api/v1/rules", "post"),
        ("/api/v1/rules/{id}", "get"),
        ("/api/v1/rules/{id}", "patch"),
        ("/api/v1/rules/{id}", "delete"),
        ("/api/v1/rules/ref/{ref}", "get"),
        ("/api/v1/sensors", "get"),
        ("/api/v1/sensors/{id}", "get"),
        ("/api/v1/sensors/ref/{ref}", "get"),
        ("/api/v1/audit", "get"),
        ("/api/v1/workers", "get"),
        ("/api/v1/webhooks/{key}", "post"),
        ("/api/v1/events", "get"),
        ("/api/v1/events/{id}", "get"),
        ("/api/v1/enforcements", "get"),
        ("/api/v1/enforcements/{id}", "get"),
        ("/api/v1/executions", "get"),
        ("/api/v1/executions", "post"),
        ("/api/v1/executions/{id}", "get"),
        ("/api/v1/executions/{id}/children", "get"),
        ("/api/v1/executions/{id}/cancel", "post"),
        ("/api/v1/datastore", "get"),
        ("/api/v1/datastore", "post"),
        ("/api/v1/datastore/{key}", "get"),
        ("/api/v1/datastore/{key}", "delete"),
        ("/api/v1/inquiries", "get"),
        ("/api/v1/inquiries/{id}", "get"),
        ("/api/v1/inquiries/{id}/respond", "post"),
    ];
    for (path, method) in expected {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not documented");
    }
    // Every documented operation is served (no "no route" 404, no 405).
    let mut operations = 0;
    for (path, item) in paths {
        for method in ["get", "post", "patch", "delete", "put"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let concrete = path.replace("{id}", "999999").replace("{ref}", "zz.none").replace("{key}", "zz");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (m != Method::GET && m != Method::DELETE).then(|| json!({}));
            let a = app.call(Some(&admin.token), m, &concrete, body).await;
            assert_ne!(a.status, 405, "{method} {path}");
            assert!(!message(&a.body).starts_with("no route"), "{method} {path} is documented but not served");
            assert!(a.status < 500, "{method} {path}: {:?}", a.body);
        }
    }
    assert_eq!(operations, expected.len(), "the document has exactly the expected operations");
    assert!(doc.body["components"]["securitySchemes"]["bearer"].is_object());
}
