//! Identity: register, login, refresh rotation, tokens, roles (T3.10), rate limits (T3.29).

use attune_api::auth::tokens::TokenKeys;
use attune_api::auth::Role;
use attune_tests::{TestApp, PASSWORD};
use base64::Engine;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn register_login_refresh_rotation_and_revocation() {
    let app = TestApp::spawn().await;
    let reg = app
        .call(
            None,
            Method::POST,
            "/auth/register",
            Some(json!({"login": "ada", "password": PASSWORD, "display_name": "Ada"})),
        )
        .await;
    assert_eq!(reg.status, 201, "{:?}", reg.body);
    assert_eq!(reg.body["role"], "admin");
    assert_eq!(reg.body["login"], "ada");
    let tenant = reg.body["tenant_id"].as_i64().unwrap();

    let again =
        app.call(None, Method::POST, "/auth/register", Some(json!({"login": "ada", "password": PASSWORD}))).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert!(again.body["error"]["message"].as_str().unwrap().contains("ada"));

    let ada = app.login("ada", PASSWORD).await;
    assert_eq!(ada.tenant_id, tenant);
    let me = app.get(&ada, "/auth/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body, json!({"id": ada.id, "login": "ada", "tenant_id": tenant, "role": "admin"}));

    // Rotation: the refresh token works once and gives a new pair.
    let first = app.call(None, Method::POST, "/auth/refresh", Some(json!({"refresh_token": ada.refresh_token}))).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["token_type"], "Bearer");
    assert_eq!(first.body["expires_in"], 3600);
    let new_refresh = first.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, ada.refresh_token);
    let new_access = first.body["access_token"].as_str().unwrap();
    assert_eq!(app.call(Some(new_access), Method::GET, "/auth/me", None).await.status, 200);

    // The old one is revoked; presenting it again also revokes its successor (replay).
    let replay = app.call(None, Method::POST, "/auth/refresh", Some(json!({"refresh_token": ada.refresh_token}))).await;
    assert_eq!(replay.status, 401);
    let successor = app.call(None, Method::POST, "/auth/refresh", Some(json!({"refresh_token": new_refresh}))).await;
    assert_eq!(successor.status, 401, "a replayed token ends the whole session family");

    // Stored hashed, never in plaintext.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.refresh_token WHERE token_hash = $1")
        .bind(&ada.refresh_token)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let garbage = app.call(None, Method::POST, "/auth/refresh", Some(json!({"refresh_token": "nope"}))).await;
    assert_eq!(garbage.status, 401);
}

#[tokio::test]
async fn login_answers_alike_for_unknown_login_and_wrong_password() {
    let app = TestApp::spawn().await;
    app.register("grace").await;
    let wrong = app
        .call(None, Method::POST, "/auth/login", Some(json!({"login": "grace", "password": "wrong-password"})))
        .await;
    let unknown = app
        .call(None, Method::POST, "/auth/login", Some(json!({"login": "nobody", "password": "wrong-password"})))
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.body, unknown.body);
}

#[tokio::test]
async fn bad_registrations_are_refused_with_the_reason() {
    let app = TestApp::spawn().await;
    let short = app.call(None, Method::POST, "/auth/register", Some(json!({"login": "x", "password": "short"}))).await;
    assert_eq!(short.status, 422);
    assert!(short.body["error"]["message"].as_str().unwrap().contains("password"), "{:?}", short.body);
    let bad_login =
        app.call(None, Method::POST, "/auth/register", Some(json!({"login": "a b'; --", "password": PASSWORD}))).await;
    assert_eq!(bad_login.status, 422);
    assert!(bad_login.body["error"]["message"].as_str().unwrap().contains("login"));

    // Closed unless configured open: the default refuses, naming the setting.
    let default = attune_core::Config::default().auth.allow_registration;
    let closed = TestApp::spawn_with(|c| c.auth.allow_registration = default).await;
    let refused =
        closed.call(None, Method::POST, "/auth/register", Some(json!({"login": "eve", "password": PASSWORD}))).await;
    assert_eq!(refused.status, 403);
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("registration") && message.contains("ATTUNE_ALLOW_REGISTRATION"), "{message}");
}

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn tampered_expired_foreign_and_unsigned_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let user = app.register("mallory").await;
    let parts: Vec<&str> = user.token.split('.').collect();
    let payload: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    for claim in ["sub", "tenant_id", "role", "exp", "iat", "jti"] {
        assert!(payload.get(claim).is_some(), "the token carries {claim}: {payload}");
    }

    let mut elevated = payload.clone();
    elevated["tenant_id"] = json!(payload["tenant_id"].as_i64().unwrap() + 1);
    let tampered = format!("{}.{}.{}", parts[0], b64(&elevated), parts[2]);
    let alg_none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), parts[1]);
    let mut bad_sig = user.token.clone();
    // The last of the 43 characters of an HS256 signature carries 2 bits and 4 zero bits:
    // only A, Q, g and w decode, so swap between those (a 'B' would be malformed base64).
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == 'A' { 'Q' } else { 'A' });
    let keys = TokenKeys::new(&app.ctx.keys.jwt_secret, 3600, 3600);
    let expired = keys.issue_for(user.id, user.tenant_id, Role::Admin, "mallory", None, -120);
    let foreign =
        TokenKeys::new(b"another server's secret", 3600, 3600).issue(user.id, user.tenant_id, Role::Admin, "mallory");
    let hs512 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512),
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(&app.ctx.keys.jwt_secret),
    )
    .unwrap();

    for (what, token, says) in [
        ("tampered claim", tampered.as_str(), "signature"),
        ("alg none", alg_none.as_str(), ""),
        ("bad signature", bad_sig.as_str(), "signature"),
        ("expired", expired.as_str(), "expired"),
        ("signed by another secret", foreign.as_str(), "signature"),
        ("HS512", hs512.as_str(), "HS256"),
        ("garbage", "not.a.token", "malformed"),
    ] {
        let a = app.call(Some(token), Method::GET, "/auth/me", None).await;
        assert_eq!(a.status, 401, "{what}: {:?}", a.body);
        assert_eq!(a.body["error"]["code"], "unauthorized", "{what}");
        assert!(a.body["error"]["message"].as_str().unwrap().contains(says), "{what}: {:?}", a.body);
    }
    let missing = app.call(None, Method::GET, "/api/v1/packs", None).await;
    assert_eq!(missing.status, 401);
    let basic =
        app.http.get(format!("{}/api/v1/packs", app.url)).header("Authorization", "Basic YTpi").send().await.unwrap();
    assert_eq!(basic.status(), 401);
    assert_eq!(app.get(&user, "/api/v1/packs").await.status, 200, "the genuine token works");
}

/// Every role against every write route (T3.10). Writes by roles without the permission
/// are 403 naming it and change nothing; reads are open to all roles.
#[tokio::test]
async fn t3_10_rbac_every_role_against_every_write_route() {
    let app = TestApp::spawn().await;
    let admin = app.register("boss").await;
    let editor = app.add_user(&admin, "ed", "editor").await;
    let executor = app.add_user(&admin, "exe", "executor").await;
    let viewer = app.add_user(&admin, "vi", "viewer").await;

    assert_eq!(app.post(&admin, "/api/v1/packs", json!({"ref": "ops", "version": "1.0.0"})).await.status, 201);
    let action = app
        .post(&admin, "/api/v1/actions", json!({"ref": "ops.hello", "runner_type": "shell", "command": "echo hi"}))
        .await;
    assert_eq!(action.status, 201, "{:?}", action.body);
    let trigger = app.post(&admin, "/api/v1/triggers", json!({"ref": "ops.hook", "type": "webhook"})).await;
    let rule =
        app.post(&admin, "/api/v1/rules", json!({"ref": "ops.r", "trigger": "ops.hook", "action": "ops.hello"})).await;
    assert_eq!(rule.status, 201, "{:?}", rule.body);
    let pack_id = app.get(&admin, "/api/v1/packs/ref/ops").await.body["id"].as_i64().unwrap();
    let (action_id, trigger_id, rule_id) =
        (action.body["id"].as_i64().unwrap(), trigger.body["id"].as_i64().unwrap(), rule.body["id"].as_i64().unwrap());

    let writes: Vec<(Method, String, serde_json::Value, &str)> = vec![
        (Method::POST, "/api/v1/packs".into(), json!({"ref": "other", "version": "1"}), "definitions:write"),
        (Method::PATCH, format!("/api/v1/packs/{pack_id}"), json!({"label": "x"}), "definitions:write"),
        (Method::POST, "/api/v1/packs/ops/reload".into(), json!(null), "definitions:write"),
        (
            Method::POST,
            "/api/v1/actions".into(),
            json!({"ref": "ops.x", "runner_type": "shell", "command": "true"}),
            "definitions:write",
        ),
        (
            Method::PATCH,
            format!("/api/v1/actions/{action_id}"),
            json!({"command": "echo changed"}),
            "definitions:write",
        ),
        (Method::DELETE, format!("/api/v1/actions/{action_id}"), json!(null), "definitions:write"),
        (Method::POST, "/api/v1/triggers".into(), json!({"ref": "ops.t2", "type": "webhook"}), "definitions:write"),
        (Method::PATCH, format!("/api/v1/triggers/{trigger_id}"), json!({"description": "x"}), "definitions:write"),
        (Method::DELETE, format!("/api/v1/triggers/{trigger_id}"), json!(null), "definitions:write"),
        (
            Method::POST,
            "/api/v1/rules".into(),
            json!({"ref": "ops.r2", "trigger": "ops.hook", "action": "ops.hello"}),
            "definitions:write",
        ),
        (Method::PATCH, format!("/api/v1/rules/{rule_id}"), json!({"enabled": false}), "definitions:write"),
        (Method::DELETE, format!("/api/v1/rules/{rule_id}"), json!(null), "definitions:write"),
        (
            Method::POST,
            "/api/v1/users".into(),
            json!({"login": "newbie", "password": PASSWORD, "role": "viewer"}),
            "users:manage",
        ),
        (Method::GET, "/api/v1/users".into(), json!(null), "users:manage"),
        (Method::GET, "/api/v1/audit".into(), json!(null), "audit:read"),
        (Method::DELETE, format!("/api/v1/packs/{pack_id}"), json!(null), "definitions:write"),
    ];
    for user in [&executor, &viewer] {
        for (method, path, body, permission) in &writes {
            let body = (!body.is_null()).then(|| body.clone());
            let a = app.call(Some(&user.token), method.clone(), path, body).await;
            assert_eq!(a.status, 403, "{} {method} {path}: {:?}", user.login, a.body);
            let message = a.body["error"]["message"].as_str().unwrap();
            assert!(message.contains(permission), "{} {method} {path}: {message}", user.login);
        }
    }
    // Editors write definitions, but neither manage users nor read the audit log.
    for (method, path, body, permission) in &writes {
        let body = (!body.is_null()).then(|| body.clone());
        let a = app.call(Some(&editor.token), method.clone(), path, body).await;
        if permission == &"definitions:write" {
            assert!(a.status < 400 || a.status == 409, "editor {method} {path}: {} {:?}", a.status, a.body);
        } else {
            assert_eq!(a.status, 403, "editor {method} {path}");
        }
    }
    // Everyone reads.
    for user in [&admin, &editor, &executor, &viewer] {
        let a = app.get(user, "/api/v1/actions?pack=ops").await;
        assert_eq!(a.status, 200, "{}", user.login);
    }
    assert_eq!(app.get(&admin, "/api/v1/audit").await.status, 200);
    assert_eq!(app.get(&admin, "/api/v1/users").await.body["total"], 4);
}

#[tokio::test]
async fn users_are_added_to_the_admins_tenant_with_unique_logins() {
    let app = TestApp::spawn().await;
    let a = app.register("alpha").await;
    let b = app.register("beta").await;
    let added = app.post(&a, "/api/v1/users", json!({"login": "carol", "password": PASSWORD, "role": "editor"})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(added.body["tenant_id"], a.tenant_id);
    assert_eq!(added.body["role"], "editor");
    let clash = app.post(&b, "/api/v1/users", json!({"login": "carol", "password": PASSWORD, "role": "viewer"})).await;
    assert_eq!(clash.status, 409, "logins are unique across tenants: {:?}", clash.body);
    let bad_role = app.post(&a, "/api/v1/users", json!({"login": "dan", "password": PASSWORD, "role": "root"})).await;
    assert_eq!(bad_role.status, 422);
    assert!(bad_role.body["error"]["message"].as_str().unwrap().contains("role"), "{:?}", bad_role.body);
    // B's admin does not see A's users.
    let listed = app.get(&b, "/api/v1/users").await;
    assert_eq!(listed.body["total"], 1);
}

/// T3.29: 10 requests/s per user; over it 429 with Retry-After; no role is exempt (the
/// admin of a self-registered tenant is anyone).
#[tokio::test]
async fn t3_29_rate_limit_per_user_with_retry_after_for_every_role() {
    let app = TestApp::spawn_with(|c| c.api.rate_limit_per_second = 10).await;
    let admin = app.register("chief").await;
    let viewer = app.add_user(&admin, "peon", "viewer").await;
    // Logging in used one request of the viewer's budget; start from a full one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let mut ok = 0;
    let mut limited = Vec::new();
    let burst_started = std::time::Instant::now();
    for _ in 0..30 {
        let a = app.get(&viewer, "/auth/me").await;
        match a.status {
            200 => ok += 1,
            429 => limited.push(a),
            other => panic!("unexpected {other}"),
        }
    }
    // The bucket holds 10 and refills at 10/s while the burst lasts (longer on a busy machine).
    let refilled = (burst_started.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        ok >= 10 && ok <= 10 + refilled + 1,
        "the first 10 pass, then only the refill: {ok} passed, {refilled} refilled"
    );
    let first = &limited[0];
    assert_eq!(first.body["error"]["code"], "rate_limited");
    let retry_after: u64 = first.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let mut after = 0;
    for _ in 0..10 {
        if app.get(&viewer, "/auth/me").await.status == 200 {
            after += 1;
        }
    }
    assert!(after >= 9, "the window refills: {after} of 10 passed");

    let mut admin_limited = 0;
    for _ in 0..50 {
        match app.get(&admin, "/auth/me").await.status {
            200 => {}
            429 => admin_limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(admin_limited > 0, "admins are limited too");
}
