//! Secure defaults and abuse limits: admin-only actions (`run_roles`), path loads confined
//! to `packs.path_roots` and to the pack's own files, login and registration throttling,
//! case-insensitive logins, short echoes of input in errors, and an OpenAPI document that
//! lists the error answers.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Instant;

use attune_api::auth::tokens::TokenKeys;
use attune_api::auth::Role;
use attune_tests::{TestApp, User, PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// Registers `login` without logging in (so no login attempt is spent).
async fn register_only(app: &TestApp, login: &str) {
    let a = app.call(None, Method::POST, "/auth/register", Some(json!({"login": login, "password": PASSWORD}))).await;
    assert_eq!(a.status, 201, "register {login}: {:?}", a.body);
}

async fn login_attempt(app: &TestApp, login: &str, password: &str) -> attune_tests::Answer {
    app.call(None, Method::POST, "/auth/login", Some(json!({"login": login, "password": password}))).await
}

fn retry_after(a: &attune_tests::Answer) -> u64 {
    a.headers.get("retry-after").expect("a 429 carries Retry-After").to_str().unwrap().parse().unwrap()
}

// ---------------------------------------------------------------------------------------
// run_roles

#[tokio::test]
async fn core_local_runs_by_hand_for_admins_only() {
    let app = TestApp::spawn().await;
    let admin = app.register("root-ish").await;
    let editor = app.add_user(&admin, "ed", "editor").await;
    let executor = app.add_user(&admin, "exe", "executor").await;
    let run = json!({"action": "core.local", "parameters": {"cmd": "id"}});

    for user in [&editor, &executor] {
        let a = app.post(user, "/api/v1/executions", run.clone()).await;
        assert_eq!(a.status, 403, "{}: {:?}", user.login, a.body);
        assert_eq!(message(&a.body), "action core.local may be run by admin only", "{}", user.login);
    }
    // An execution's own token is an executor, whatever role its claims carry (the token
    // of a running execution: it works only while its execution runs).
    let running: i64 = sqlx::query_scalar(
        "INSERT INTO attune.execution (tenant_id, action_ref, runner_type, status, started_at)
         VALUES ($1, 'core.echo', 'builtin', 'running', now()) RETURNING id",
    )
    .bind(admin.tenant_id)
    .fetch_one(app.pool())
    .await
    .unwrap();
    let keys = TokenKeys::new(&app.ctx.keys.jwt_secret, 3600, 3600);
    let login = format!("execution/{running}");
    let token = keys.issue_for(0, admin.tenant_id, Role::Admin, &login, Some(running), 60);
    let a = app.call(Some(&token), Method::POST, "/api/v1/executions", Some(run.clone())).await;
    assert_eq!(a.status, 403, "{:?}", a.body);
    assert!(message(&a.body).contains("admin only"), "{:?}", a.body);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.execution").fetch_one(app.pool()).await.unwrap();
    assert_eq!(total, 1, "nothing was created beside the running execution");

    let a = app.post(&admin, "/api/v1/executions", run).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    // Actions without run_roles stay open to every role with the run permission.
    let echo = app.post(&executor, "/api/v1/executions", json!({"action": "core.echo", "parameters": {}})).await;
    assert_eq!(echo.status, 201, "{:?}", echo.body);
    assert_eq!(app.get(&executor, "/api/v1/actions/ref/core.local").await.body["run_roles"], json!(["admin"]));
}

#[tokio::test]
async fn rules_and_workflows_cannot_run_what_their_author_may_not() {
    let app = TestApp::spawn().await;
    let admin = app.register("owner").await;
    let editor = app.add_user(&admin, "author", "editor").await;
    assert_eq!(app.post(&editor, "/api/v1/packs", json!({"ref": "ops", "version": "1.0.0"})).await.status, 201);
    assert_eq!(app.post(&editor, "/api/v1/triggers", json!({"ref": "ops.hook", "type": "webhook"})).await.status, 201);

    // An editor's rule on core.local would run it for them: refused.
    let rule = json!({"ref": "ops.shell", "trigger": "ops.hook", "action": "core.local",
                      "action_params": {"cmd": "id"}});
    let refused = app.post(&editor, "/api/v1/rules", rule.clone()).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert!(message(&refused.body).contains("action core.local may be run by admin only"), "{:?}", refused.body);
    assert_eq!(app.get(&admin, "/api/v1/rules?pack=ops").await.body["total"], 0);

    // The admin may; the editor may then neither change it...
    let made = app.post(&admin, "/api/v1/rules", rule).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let id = made.body["id"].as_i64().unwrap();
    let patched =
        app.patch(&editor, &format!("/api/v1/rules/{id}"), json!({"action_params": {"cmd": "rm -rf /"}})).await;
    assert_eq!(patched.status, 403, "{:?}", patched.body);
    assert_eq!(app.get(&admin, &format!("/api/v1/rules/{id}")).await.body["action_params"], json!({"cmd": "id"}));
    // ...nor point one of their own rules at an action of their tenant that is admin-only,
    let guarded =
        json!({"ref": "ops.deploy", "runner_type": "shell", "command": "echo deploy", "run_roles": ["admin"]});
    let guarded = app.post(&admin, "/api/v1/actions", guarded).await;
    assert_eq!(guarded.status, 201, "{:?}", guarded.body);
    let other = json!({"ref": "ops.deploys", "trigger": "ops.hook", "action": "ops.deploy"});
    assert_eq!(app.post(&editor, "/api/v1/rules", other).await.status, 403);
    // ...nor lift its run_roles or change what it runs,
    let guarded_id = guarded.body["id"].as_i64().unwrap();
    for change in [json!({"run_roles": null}), json!({"command": "echo owned"})] {
        let a = app.patch(&editor, &format!("/api/v1/actions/{guarded_id}"), change.clone()).await;
        assert_eq!(a.status, 403, "{change}: {:?}", a.body);
        assert!(message(&a.body).contains("may be run by admin only"), "{:?}", a.body);
    }
    // ...nor wrap it in a workflow.
    let workflow = json!({"ref": "ops.wrapper", "runner_type": "workflow",
                          "workflow": {"tasks": [{"name": "t", "action": "core.local", "input": {"cmd": "id"}}]}});
    let a = app.post(&editor, "/api/v1/actions", workflow.clone()).await;
    assert_eq!(a.status, 403, "{:?}", a.body);
    assert!(message(&a.body).contains("core.local"), "{:?}", a.body);
    assert_eq!(app.post(&admin, "/api/v1/actions", workflow).await.status, 201);
}

// ---------------------------------------------------------------------------------------
// Path loads

fn write_pack(dir: &Path, pack_ref: &str) {
    fs::create_dir_all(dir.join("actions")).unwrap();
    fs::write(dir.join("pack.yaml"), format!("ref: {pack_ref}\nversion: 1.0.0\n")).unwrap();
    fs::write(dir.join("actions/hello.yaml"), "name: hello\nrunner_type: shell\ncommand: echo hello\n").unwrap();
}

const SECRET: &str = "TOPSECRET-7f3a9c-do-not-echo";

#[tokio::test]
async fn path_loads_are_confined_to_the_configured_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    write_pack(&root.join("good"), "good");
    write_pack(&outside.join("elsewhere"), "elsewhere");
    symlink(outside.join("elsewhere"), root.join("link")).unwrap();
    let roots = vec![root.clone()];
    let app = TestApp::spawn_with(move |c| c.packs.path_roots = roots).await;
    let u = app.register("packer").await;
    let load = |p: &Path| app.post(&u, "/api/v1/packs", json!({"path": p}));

    for (what, path) in [
        ("outside the roots", outside.join("elsewhere")),
        ("climbing out with ..", root.join("../outside/elsewhere")),
        ("a link out of the root", root.join("link")),
        ("a missing directory outside", outside.join("nothing-here")),
        ("the system's files", "/etc".into()),
    ] {
        let a = load(&path).await;
        assert_eq!(a.status, 403, "{what}: {:?}", a.body);
        assert!(message(&a.body).contains("ATTUNE_PACK_PATH_ROOTS"), "{what}: {:?}", a.body);
    }
    let missing = load(&root.join("nothing-here")).await;
    assert_eq!(missing.status, 422, "{:?}", missing.body);
    let relative = app.post(&u, "/api/v1/packs", json!({"path": "root/good"})).await;
    assert_eq!(relative.status, 422, "{:?}", relative.body);

    let good = load(&root.join("good")).await;
    assert_eq!(good.status, 201, "{:?}", good.body);
    assert_eq!(app.get(&u, "/api/v1/actions?pack=good").await.body["total"], 1);

    // With no roots configured (the default), path loads are off.
    let closed = TestApp::spawn_with(|c| c.packs.path_roots = Vec::new()).await;
    let v = closed.register("closed").await;
    let a = closed.post(&v, "/api/v1/packs", json!({"path": root.join("good")})).await;
    assert_eq!(a.status, 403, "{:?}", a.body);
    assert!(message(&a.body).contains("ATTUNE_PACK_PATH_ROOTS"), "{:?}", a.body);
    assert!(attune_core::Config::default().packs.path_roots.is_empty());
}

#[tokio::test]
async fn a_pack_never_reads_or_echoes_files_outside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let secret_file = tmp.path().join("secret.txt");
    fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let roots = vec![root.clone()];
    let app = TestApp::spawn_with(move |c| c.packs.path_roots = roots).await;
    let u = app.register("prober").await;

    type Break = fn(&Path, &Path);
    let cases: [(&str, Break, &str); 5] = [
        (
            "pack.yaml linked to a secret",
            |p, s| {
                fs::remove_file(p.join("pack.yaml")).unwrap();
                symlink(s, p.join("pack.yaml")).unwrap();
            },
            "pack.yaml",
        ),
        ("an action file linked to a secret", |p, s| symlink(s, p.join("actions/leak.yaml")).unwrap(), "leak.yaml"),
        (
            "actions/ linked to another directory",
            |p, s| {
                fs::remove_dir_all(p.join("actions")).unwrap();
                symlink(s.parent().unwrap(), p.join("actions")).unwrap();
            },
            "actions",
        ),
        (
            "an entry point linked out",
            |p, s| {
                symlink(s, p.join("actions/run.sh")).unwrap();
                fs::write(p.join("actions/ep.yaml"), "name: ep\nrunner_type: shell\nentry_point: run.sh\n").unwrap();
            },
            "entry_point",
        ),
        ("any other file linked out", |p, s| symlink(s, p.join("notes.txt")).unwrap(), "notes.txt"),
    ];
    for (i, (what, breaks, names)) in cases.into_iter().enumerate() {
        let dir = root.join(format!("case{i}"));
        write_pack(&dir, &format!("case{i}"));
        breaks(&dir, &secret_file);
        let a = app.post(&u, "/api/v1/packs", json!({"path": dir})).await;
        assert_eq!(a.status, 422, "{what}: {:?}", a.body);
        let text = a.body.to_string();
        assert!(!text.contains("TOPSECRET"), "{what}: the answer echoes the target: {text}");
        assert!(message(&a.body).contains(names), "{what}: the message names the file: {text}");
        assert!(message(&a.body).contains("outside the pack directory"), "{what}: {text}");
    }
    // A link that stays inside the pack is read like any file.
    let dir = root.join("inner");
    write_pack(&dir, "inner");
    fs::create_dir_all(dir.join("shared")).unwrap();
    fs::write(dir.join("shared/hi.yaml"), "name: hi\nrunner_type: shell\ncommand: echo hi\n").unwrap();
    symlink(dir.join("shared/hi.yaml"), dir.join("actions/hi.yaml")).unwrap();
    let a = app.post(&u, "/api/v1/packs", json!({"path": dir})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(app.get(&u, "/api/v1/actions?pack=inner").await.body["total"], 2);

    // YAML errors quote no content: a pack.yaml that is one secret value, a sequence of
    // them, or a mapping whose (unknown) key is one: at most a short excerpt of a name.
    let long_key = format!("k{}-tail-never-shown", "a".repeat(60));
    for (i, content) in [SECRET.to_string(), format!("[{SECRET}]"), format!("ref: x\nversion: 1.0.0\n{long_key}: 1\n")]
        .iter()
        .enumerate()
    {
        let dir = root.join(format!("yaml{i}"));
        write_pack(&dir, "yaml");
        fs::write(dir.join("pack.yaml"), content).unwrap();
        let a = app.post(&u, "/api/v1/packs", json!({"path": dir})).await;
        assert_eq!(a.status, 422, "{content}: {:?}", a.body);
        assert!(message(&a.body).contains("pack.yaml"), "{:?}", a.body);
        let text = a.body.to_string();
        assert!(!text.contains("do-not-echo") && !text.contains("never-shown"), "{content}: echoed: {text}");
    }
}

// ---------------------------------------------------------------------------------------
// Throttling and logins

#[tokio::test]
async fn login_is_throttled_per_login_whatever_the_case() {
    let app = TestApp::spawn().await;
    register_only(&app, "victim").await;
    for (i, login) in ["victim", "VICTIM", "Victim", "victim", "vIcTiM"].iter().enumerate() {
        let a = login_attempt(&app, login, "wrong-password").await;
        assert_eq!(a.status, 401, "attempt {i}: {:?}", a.body);
    }
    // The sixth within the minute is refused before the password is even checked.
    let limited = login_attempt(&app, "Victim", PASSWORD).await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert_eq!(limited.body["error"]["code"], "rate_limited");
    let first_wait = retry_after(&limited);
    assert!((1..=12).contains(&first_wait), "{first_wait}");
    // Trying again while told to wait backs off.
    let again = login_attempt(&app, "victim", PASSWORD).await;
    assert_eq!(again.status, 429);
    assert!(retry_after(&again) > first_wait, "{} after {first_wait}", retry_after(&again));
    // Other logins are not locked out by it.
    register_only(&app, "bystander").await;
    assert_eq!(login_attempt(&app, "bystander", PASSWORD).await.status, 200);
}

#[tokio::test]
async fn login_and_registration_are_throttled_per_client_address() {
    let app = TestApp::spawn().await;
    register_only(&app, "someone").await;
    let started = Instant::now();
    let mut passed = 0;
    let mut limited = None;
    for i in 0..30 {
        // A different login each time: only the address budget applies.
        let a = login_attempt(&app, &format!("guess{i}"), "wrong-password").await;
        match a.status {
            401 => passed += 1,
            429 => {
                limited = Some(a);
                break;
            }
            other => panic!("unexpected {other}: {:?}", a.body),
        }
    }
    let limited = limited.expect("the address is throttled");
    // 10 a minute: one more slot every 6 s while the burst lasts.
    let refilled = (started.elapsed().as_secs_f64() / 6.0).ceil() as usize;
    assert!((10..=10 + refilled).contains(&passed), "{passed} passed, {refilled} refilled");
    assert!(retry_after(&limited) >= 1);
    // A real user from the same address is refused too: the limit is the address's.
    assert_eq!(login_attempt(&app, "someone", PASSWORD).await.status, 429);

    // Registration has a budget of its own, counted the same way (bad bodies included).
    let mut statuses = Vec::new();
    for i in 0..12 {
        let body = json!({"login": format!("new{i}"), "password": "short"});
        statuses.push(app.call(None, Method::POST, "/auth/register", Some(body)).await.status);
    }
    // One went to "someone" above; 9 more pass (422: short password), then 429.
    assert_eq!(&statuses[..9], &[422; 9], "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test]
async fn logins_are_unique_and_matched_whatever_their_case() {
    let app = TestApp::spawn().await;
    register_only(&app, "Ada").await;
    let clash =
        app.call(None, Method::POST, "/auth/register", Some(json!({"login": "ADA", "password": PASSWORD}))).await;
    assert_eq!(clash.status, 409, "{:?}", clash.body);
    assert!(message(&clash.body).contains("taken"), "{:?}", clash.body);

    let ada = app.login("ada", PASSWORD).await;
    let me = app.get(&ada, "/auth/me").await;
    assert_eq!(me.body["login"], "Ada", "the token names the login as registered");

    let added = app.post(&ada, "/api/v1/users", json!({"login": "Bob", "password": PASSWORD, "role": "viewer"})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    for login in ["bob", "BOB", "aDA"] {
        let a = app.post(&ada, "/api/v1/users", json!({"login": login, "password": PASSWORD, "role": "viewer"})).await;
        assert_eq!(a.status, 409, "{login}: {:?}", a.body);
        assert!(message(&a.body).contains("taken"), "{login}: {:?}", a.body);
    }
    assert_eq!(app.get(&ada, "/api/v1/users").await.body["total"], 2);
}

#[tokio::test]
async fn error_messages_quote_at_most_an_excerpt_of_the_input() {
    let app = TestApp::spawn().await;
    let u: User = app.register("echo").await;
    let long = "x".repeat(5000);
    let answers = [
        (
            "login",
            app.call(None, Method::POST, "/auth/register", Some(json!({"login": long, "password": PASSWORD}))).await,
        ),
        ("action ref", app.post(&u, "/api/v1/executions", json!({"action": format!("p.{long}")})).await),
        ("path ref", app.get(&u, &format!("/api/v1/actions/ref/{long}")).await),
        ("unknown route", app.get(&u, &format!("/api/v1/{long}")).await),
        (
            "wrong JSON type",
            app.post(&u, "/api/v1/executions", json!({"action": "core.echo", "parameters": long})).await,
        ),
        ("wrong JSON type", app.post(&u, "/api/v1/executions", json!({"action": long, "parameters": 5})).await),
        ("unknown field", app.post(&u, "/api/v1/packs", json!({ long.clone(): 1 })).await),
        ("query", app.get(&u, &format!("/api/v1/executions?status={long}")).await),
        ("rule ref", app.post(&u, "/api/v1/rules", json!({"ref": format!("{long}.r")})).await),
    ];
    for (what, a) in answers {
        assert!(a.status >= 400 && a.status < 500, "{what}: {} {:?}", a.status, a.body);
        let m = message(&a.body);
        assert!(!m.is_empty(), "{what}: {:?}", a.body);
        assert!(m.chars().count() < 600, "{what}: {} characters: {m}", m.chars().count());
        assert!(!m.contains(&"x".repeat(201)), "{what}: more than 200 characters of input: {m}");
    }
}

#[tokio::test]
async fn the_per_user_rate_limit_spares_no_role() {
    let app = TestApp::spawn_with(|c| c.api.rate_limit_per_second = 5).await;
    let admin = app.register("self-made-admin").await;
    let mut limited = 0;
    for _ in 0..30 {
        if app.get(&admin, "/auth/me").await.status == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "a self-registered admin is rate limited like anyone");
}

// ---------------------------------------------------------------------------------------
// OpenAPI

fn error_schema_of(response: &Value) -> Option<&str> {
    response["content"]["application/json"]["schema"]["$ref"].as_str()
}

#[tokio::test]
async fn openapi_lists_the_error_answers_of_every_operation() {
    let app = TestApp::spawn().await;
    let doc = app.call(None, Method::GET, "/openapi.json", None).await.body;
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object(), "ErrorBody is a schema");
    let paths = doc["paths"].as_object().unwrap();
    let mut secured = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            let is_secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            if is_secured {
                secured += 1;
                assert!(has("401"), "{method} {path} does not list 401");
                assert!(has("429"), "{method} {path} does not list 429");
            }
            if op.get("requestBody").is_some() {
                assert!(has("400") && has("413"), "{method} {path}: a body can be malformed or too large");
                if path != "/api/v1/webhooks/{key}" {
                    assert!(has("422"), "{method} {path}: a body can be invalid");
                }
            }
            if path.contains('{') {
                assert!(has("400"), "{method} {path}: a path parameter can be malformed");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        error_schema_of(response),
                        Some("#/components/schemas/ErrorBody"),
                        "{method} {path} {status} has no error body schema"
                    );
                    assert!(
                        !response["description"].as_str().unwrap_or_default().is_empty(),
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
    assert!(secured > 30, "most operations are secured: {secured}");
    for path in ["/auth/login", "/auth/register"] {
        let limited = &doc["paths"][path]["post"]["responses"]["429"];
        assert!(limited["headers"]["Retry-After"].is_object(), "{path}: {limited}");
    }
    let run = &doc["paths"]["/api/v1/executions"]["post"]["responses"];
    for status in ["400", "401", "403", "404", "409", "413", "422", "429"] {
        assert!(run.get(status).is_some(), "POST /api/v1/executions lists {status}");
    }
}
