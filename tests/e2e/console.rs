//! The web console (issue 16) in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, installed by scripts/browser.sh; a missing
//! browser fails these tests, it never skips them). Each test starts its own chromedriver on
//! a free port against an app that runs the whole pipeline and serves `/ws`, logs in through
//! the page, and watches the page change without reloading it. Screenshots go to
//! `<target>/console-screenshots/` (or `ATTUNE_CONSOLE_SCREENSHOTS`) as the tests go.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use attune_tests::{eventually, TestApp, User, PASSWORD};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long the page may take to show something (a generous deadline, not a timing claim).
const WAIT: Duration = Duration::from_secs(60);
/// The desktop window; the phone check resizes to 390 px wide.
const DESKTOP: (u32, u32) = (1280, 900);

/// A headless Chromium, through a chromedriver of its own (its process group is killed when
/// this is dropped, the browser with it).
struct Browser {
    client: Client,
    driver: std::process::Child,
    base: String,
    _profile: tempfile::TempDir,
}

fn binary(env: &str, default: &str) -> String {
    let path = std::env::var(env).unwrap_or_else(|_| default.to_string());
    assert!(
        std::path::Path::new(&path).is_file(),
        "{path} is missing: run scripts/browser.sh (installs Debian's chromium and chromium-driver), or set {env}"
    );
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for the app at `base`.
    async fn start(base: &str) -> Browser {
        use std::os::unix::process::CommandExt;
        let chromium = binary("ATTUNE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("ATTUNE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        eventually("chromedriver to listen", WAIT, || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
        })
        .await;
        let profile = tempfile::tempdir().unwrap();
        let (w, h) = DESKTOP;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // Tests run as root: Chromium's own sandbox needs an unprivileged user.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", format!("--window-size={w},{h}"),
                         format!("--user-data-dir={}", profile.path().display())]
            }
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector).capabilities(caps).connect(&url).await.expect("a Chromium session");
        let mut browser = Browser { client, driver, base: base.to_string(), _profile: profile };
        browser.resize(DESKTOP).await;
        browser
    }

    async fn resize(&mut self, (w, h): (u32, u32)) {
        self.client.set_window_size(w, h).await.expect("resize the window");
    }

    /// Opens `#/route` of the console (a full page load).
    async fn open(&self, route: &str) {
        self.client.goto(&format!("{}/{route}", self.base)).await.expect("the page loads");
    }

    /// Evaluates `script` (a function body) until it returns something other than null or
    /// false, and returns that.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.client.execute(script, vec![]).await {
                Ok(Value::Null) | Ok(Value::Bool(false)) | Err(_) => {}
                Ok(v) => return v,
            }
            if tokio::time::Instant::now() > deadline {
                // What the page showed instead, to tell a slow server from a broken page.
                let shot =
                    self.screenshot(&format!("failed-{}", what.replace(|c: char| !c.is_alphanumeric(), "-"))).await;
                let text = self.client.execute("return document.body.innerText", vec![]).await.unwrap_or_default();
                let text: String = text.as_str().unwrap_or_default().chars().take(2000).collect();
                panic!("timed out after {WAIT:?} waiting for {what}; the page ({}) showed:\n{text}", shot.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.until(&format!("{css} on the page"), &format!("return document.querySelector({css:?}) !== null")).await;
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"))
    }

    async fn type_into(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Signs in through the login form and waits for the live stream.
    async fn login(&self, user: &User) {
        self.open("").await;
        self.type_into("#login-name", &user.login).await;
        self.type_into("#login-password", PASSWORD).await;
        self.click("#login-submit").await;
        self.until("the stream to be live", "return document.getElementById('stream-state').dataset.state === 'live'")
            .await;
    }

    /// Saves a PNG of the window as `<name>.png` in the screenshot folder.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Marks the document; [`Browser::not_reloaded`] then proves no reload happened since.
    async fn mark(&self) {
        self.js("window.__attuneTestMark = 'unchanged'; return null").await;
    }

    async fn not_reloaded(&self) {
        assert_eq!(self.js("return window.__attuneTestMark || null").await, "unchanged", "the page was reloaded");
    }

    /// Ends the WebDriver session (the drop then stops chromedriver).
    async fn close(self) {
        self.client.clone().close().await.expect("the session closes");
    }
}

fn kill_group(driver: &mut std::process::Child) {
    use nix::sys::signal::{killpg, Signal};
    let _ = killpg(nix::unistd::Pid::from_raw(driver.id() as i32), Signal::SIGKILL);
    let _ = driver.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// `ATTUNE_CONSOLE_SCREENSHOTS`, else `<target dir>/console-screenshots`.
fn screenshot_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ATTUNE_CONSOLE_SCREENSHOTS") {
        return PathBuf::from(dir);
    }
    // The test binary is <target>/<profile>/deps/e2e-<hash>.
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).expect("target/<profile>/deps/<binary>").join("console-screenshots")
}

async fn created(app: &TestApp, u: &User, path: &str, body: Value) -> Value {
    let a = app.post(u, path, body.clone()).await;
    assert_eq!(a.status, 201, "{path} {body}: {:?}", a.body);
    a.body
}

/// The page is public and locked down: no token needed, a strict CSP, no inline code, and
/// every asset it names is served with the right type. Signing in keeps the token in
/// sessionStorage only, a bad password is said so, a stale access token is refreshed, and
/// the console fits a phone's width with keyboard access from the first Tab.
#[tokio::test]
async fn t16_console_login() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("consolelogin").await;

    let page = app.http.get(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'self'") && csp.contains("connect-src 'self' ws: wss:"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "no external resources: {html}");
    for (asset, kind) in [("/console/app.js", "text/javascript"), ("/console/console.css", "text/css")] {
        let r = app.http.get(format!("{}{asset}", app.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with(kind), "{asset}");
        let etag = r.headers()["etag"].clone();
        let again = app.http.get(format!("{}{asset}", app.url)).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304, "{asset} revalidates");
    }
    let missing = app.http.get(format!("{}/console/nope.js", app.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let mut b = Browser::start(&app.url).await;
    b.open("").await;
    b.type_into("#login-name", &u.login).await;
    b.type_into("#login-password", "wrong-password").await;
    b.click("#login-submit").await;
    let said = b.until("the login error", "return document.getElementById('login-error').textContent || null").await;
    assert_eq!(said, "Wrong login or password.");

    // Keyboard only: Tab from the login field to the password, Enter submits.
    b.find("#login-password").await.clear().await.unwrap();
    b.type_into("#login-name", &format!("{}\u{E004}", u.login)).await;
    assert_eq!(b.js("return document.activeElement.id").await, "login-password");
    b.client.active_element().await.unwrap().send_keys(&format!("{PASSWORD}\u{E007}")).await.unwrap();
    b.until("the stream to be live", "return document.getElementById('stream-state').dataset.state === 'live'").await;
    let who = b.until("the signed-in user", "return document.getElementById('whoami').textContent || null").await;
    assert_eq!(who, "consolelogin (admin)");
    b.until("the dashboard counts", "return document.querySelectorAll('#dashboard-counts li').length === 9").await;
    let stored = b.js("return [sessionStorage.getItem('attune.session') !== null, localStorage.length]").await;
    assert_eq!(stored, json!([true, 0]), "the token is in sessionStorage only");

    // A stale access token: the next call is refused (401), refreshed once, and retried.
    b.js("const s = JSON.parse(sessionStorage.getItem('attune.session')); s.access = 'stale'; \
          sessionStorage.setItem('attune.session', JSON.stringify(s)); location.hash = '#/rules'; return null")
        .await;
    b.until(
        "the rules page after a refresh",
        "return document.getElementById('rules-status')?.textContent.includes('rules') || null",
    )
    .await;
    let fresh = b.js("return JSON.parse(sessionStorage.getItem('attune.session')).access").await;
    assert_ne!(fresh, "stale", "the token was refreshed");
    // A refresh token that no longer works sends the user back to the login form.
    b.js("sessionStorage.setItem('attune.session', JSON.stringify({access: 'stale', refresh: 'revoked'})); \
          location.hash = '#/packs'; return null")
        .await;
    b.find("#login-form").await;

    // Phone width: nothing wider than the screen, the navigation still there.
    b.login(&u).await;
    b.resize((390, 844)).await;
    b.open("#/").await;
    b.until("the dashboard at phone width", "return document.querySelectorAll('#dashboard-counts li').length === 9")
        .await;
    let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
    assert!(overflow.as_i64().unwrap() <= 0, "the page is {overflow} px wider than the phone");
    assert_eq!(b.js("return document.querySelectorAll('#nav a').length").await, 6);
    b.screenshot("phone-dashboard").await;
    b.close().await;
}

/// A webhook fires while the execution list is open: the run appears and finishes on the
/// page without a reload. With the stream cut, a run that happens meanwhile arrives through
/// the `since` replay when it reconnects.
#[tokio::test]
async fn t16_console_webhook_execution_appears_live() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("consolelive").await;
    created(&app, &u, "/api/v1/packs", json!({"ref": "hooks", "version": "1.0.0"})).await;
    let trigger = created(&app, &u, "/api/v1/triggers", json!({"ref": "hooks.deploy", "type": "webhook"})).await;
    let url = trigger["webhook_url"].as_str().unwrap().to_string();
    created(
        &app,
        &u,
        "/api/v1/actions",
        json!({"ref": "hooks.build", "runner_type": "shell",
        "command": "echo building $ATTUNE_PARAM_BRANCH; sleep 1; echo done",
        "parameters": {"branch": {"type": "string", "required": true}}}),
    )
    .await;
    created(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "hooks.on_deploy", "trigger": "hooks.deploy",
        "action": "hooks.build", "action_params": {"branch": "{{ trigger.data.branch }}"}}),
    )
    .await;

    let mut b = Browser::start(&app.url).await;
    b.login(&u).await;
    b.open("#/executions").await;
    b.until("the stream to be live", "return document.getElementById('stream-state').dataset.state === 'live'").await;
    b.until("the empty list", "return document.getElementById('executions-status').textContent.startsWith('0 of 0')")
        .await;
    b.mark().await;

    app.fire(&url, json!({"branch": "main"})).await;
    let id = b
        .until(
            "the run to appear",
            "return document.querySelector('#execution-rows tr[data-execution-id]')?.dataset.executionId || null",
        )
        .await;
    let id: i64 = id.as_str().unwrap().parse().unwrap();
    let row = format!("#execution-rows tr[data-execution-id='{id}']");
    b.until("the run to finish", &format!("return document.querySelector(\"{row}\")?.dataset.status === 'succeeded'"))
        .await;
    b.not_reloaded().await;
    let cells = b.js(&format!("return [...document.querySelector(\"{row}\").cells].map(c => c.textContent)")).await;
    assert_eq!(cells[1], "hooks.build");
    assert_eq!(cells[3], "hooks.on_deploy");
    let api = app.finished_execution(&u, id).await;
    assert_eq!(api["status"], "succeeded", "{api}");

    // Filters: a status that does not match hides the row; the rule's name shows it again.
    b.find("#filter-status").await.select_by_value("failed").await.unwrap();
    b.until("the row to be filtered out", &format!("return document.querySelector(\"{row}\") === null")).await;
    b.find("#filter-status").await.select_by_value("").await.unwrap();
    b.type_into("#filter-rule", "hooks.on_deploy").await;
    b.click("#execution-filters button[type=submit]").await;
    b.until("the row under the rule filter", &format!("return document.querySelector(\"{row}\") !== null")).await;
    b.screenshot("executions-live").await;

    // Cut the stream, run once more while it is down, reconnect: the replay (since = the last
    // change seen) brings the run; the list is not re-read (a resumed stream skips that).
    b.js("window.attuneStream.stopped = true; window.attuneStream.socket.close(); return null").await;
    b.until("the stream to be down", "return window.attuneStream.socket.readyState === WebSocket.CLOSED").await;
    app.fire(&url, json!({"branch": "release"})).await;
    let second = eventually("the second run to finish", WAIT, || async {
        let page = app.get(&u, "/api/v1/executions?status=succeeded").await;
        (page.body["total"] == 2).then(|| page.body["data"][0]["id"].as_i64().unwrap())
    })
    .await;
    // Count the list's re-reads from here on.
    b.js("window.__listReads = 0; const f = window.fetch; \
          window.fetch = (url, ...a) => { if (String(url).startsWith('/api/v1/executions?')) window.__listReads++; return f(url, ...a); }; \
          return null")
        .await;
    b.js("window.attuneStream.stopped = false; window.attuneStream.connect(); return null").await;
    b.until(
        "the replayed run",
        &format!("return document.querySelector(\"#execution-rows tr[data-execution-id='{second}']\")?.dataset.status === 'succeeded'"),
    )
    .await;
    assert_eq!(b.js("return window.__listReads").await, 0, "the run came from the replay, not a re-read of the list");
    b.not_reloaded().await;

    // The detail page: parameters, output, attempts.
    b.click(&format!("{row} a")).await;
    let out = b.until("the output", "return document.getElementById('execution-stdout')?.textContent || null").await;
    assert_eq!(out, "building main\ndone\n");
    let facts = b.js("return document.getElementById('execution-summary').textContent").await;
    assert!(facts.as_str().unwrap().contains("1 of 1"), "{facts}");
    b.not_reloaded().await;

    // The list at a phone's width: both runs, nothing wider than the screen.
    b.resize((390, 844)).await;
    b.click("#nav a[data-route=executions]").await;
    b.until(
        "both runs at phone width",
        "return document.querySelectorAll('#execution-rows tr[data-status=succeeded]').length === 2",
    )
    .await;
    let overflow = b.js("return document.documentElement.scrollWidth - window.innerWidth").await;
    assert!(overflow.as_i64().unwrap() <= 0, "the page is {overflow} px wider than the phone");
    b.screenshot("phone-executions").await;
    b.close().await;
}

/// A workflow stops at an inquiry: its page shows the task tree and a form generated from
/// the inquiry's schema; answering through the form lets the workflow go on, and the tree
/// and status follow live.
#[tokio::test]
async fn t16_console_inquiry_form_resumes_workflow() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("consoleask").await;
    created(&app, &u, "/api/v1/packs", json!({"ref": "ops", "version": "1.0.0"})).await;
    let schema = json!({"type": "object", "required": ["approved", "window"], "properties": {
        "approved": {"type": "boolean", "description": "Go ahead with the change"},
        "window": {"type": "string", "enum": ["tonight", "weekend"]},
        "replicas": {"type": "integer", "minimum": 1},
        "note": {"type": "string"}}});
    let def = json!({"tasks": [
        {"name": "prepare", "action": "core.echo", "input": {"message": "preparing {{ execution.params.change }}"}},
        {"name": "approve", "action": "core.ask", "depends_on": ["prepare"],
         "input": {"prompt": "Apply {{ execution.params.change }}?", "schema": schema}},
        {"name": "apply", "action": "core.echo", "depends_on": ["approve"],
         "input": {"message": "{{ task_approve.result.output.window }} x{{ task_approve.result.output.replicas }}"}}],
        "output": {"applied": "{{ task_apply.result.output.message }}"}});
    created(&app, &u, "/api/v1/actions", json!({"ref": "ops.change", "runner_type": "workflow", "workflow": def}))
        .await;
    let wf =
        created(&app, &u, "/api/v1/executions", json!({"action": "ops.change", "parameters": {"change": "CHG-16"}}))
            .await["id"]
            .as_i64()
            .unwrap();

    let b = Browser::start(&app.url).await;
    b.login(&u).await;
    b.open(&format!("#/executions/{wf}")).await;
    let inquiry = b
        .until(
            "the inquiry form",
            "return document.querySelector('#execution-inquiries article.inquiry')?.dataset.inquiryId || null",
        )
        .await;
    let inquiry: i64 = inquiry.as_str().unwrap().parse().unwrap();
    let form = format!("#inquiry-{inquiry}");
    b.until(
        "the workflow to be paused",
        "return document.querySelector('#execution-summary [data-status]')?.dataset.status === 'paused'",
    )
    .await;
    b.until(
        "the tree",
        "return document.querySelector(\"#execution-tree li[data-task='approve']\")?.dataset.status === 'paused'",
    )
    .await;
    b.mark().await;
    // The generated controls: a checkbox, a select, a number input, a text input.
    let kinds = b
        .js(&format!(
            "const f = document.querySelector('{form}'); return ['approved','window','replicas','note'].map(n => {{ \
             const el = f.elements[n]; return el.tagName.toLowerCase() + ':' + (el.type || '') + ':' + el.required + ':' + \
             (document.querySelector('label[for=\"' + el.id + '\"]') !== null); }})"
        ))
        .await;
    assert_eq!(
        kinds,
        json!([
            "input:checkbox:false:true",
            "select:select-one:true:true",
            "input:number:false:true",
            "input:text:false:true"
        ])
    );
    assert_eq!(
        b.js(&format!("return document.querySelector('{form} h3, #inquiry-{inquiry}-prompt').textContent")).await,
        "Apply CHG-16?"
    );
    b.screenshot("workflow-inquiry").await;
    // The navigation counts it, and the inquiries page has the same form.
    b.until("the pending count", "return document.getElementById('inquiry-count').textContent === '1'").await;
    b.click("#nav a[data-route=inquiries]").await;
    b.until("the inquiry on its page", &format!("return document.querySelector('#inquiry-list {form}') !== null"))
        .await;
    b.js(&format!("location.hash = '#/executions/{wf}'; return null")).await;
    b.find(&format!("#execution-inquiries {form}")).await;

    b.click(&format!("{form}-approved")).await;
    b.find(&format!("{form}-window")).await.select_by_label("weekend").await.unwrap();
    b.type_into(&format!("{form}-replicas"), "3").await;
    b.click(&format!("{form}-submit")).await;

    b.until(
        "the workflow to finish",
        "return document.querySelector('#execution-summary [data-status]')?.dataset.status === 'succeeded'",
    )
    .await;
    b.until(
        "the apply task in the tree",
        "return document.querySelector(\"#execution-tree li[data-task='apply']\")?.dataset.status === 'succeeded'",
    )
    .await;
    b.not_reloaded().await;
    let answered = app.get(&u, &format!("/api/v1/inquiries/{inquiry}")).await;
    assert_eq!(answered.body["status"], "responded");
    assert_eq!(answered.body["response"], json!({"approved": true, "window": "weekend", "replicas": 3}));
    let done = app.finished_execution(&u, wf).await;
    assert_eq!(done["result"]["output"]["applied"], "weekend x3", "{done}");
    b.screenshot("workflow-finished").await;
    b.close().await;
}

/// A rule's switch disables and enables it (and a disabled rule then ignores its webhook).
#[tokio::test]
async fn t16_console_rule_toggle() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("consolerules").await;
    created(&app, &u, "/api/v1/packs", json!({"ref": "r", "version": "1.0.0"})).await;
    created(&app, &u, "/api/v1/triggers", json!({"ref": "r.hook", "type": "webhook"})).await;
    let rule = created(
        &app,
        &u,
        "/api/v1/rules",
        json!({"ref": "r.echo", "trigger": "r.hook", "action": "core.echo",
        "action_params": {"message": "hi"}}),
    )
    .await;
    let rule_id = rule["id"].as_i64().unwrap();

    let b = Browser::start(&app.url).await;
    b.login(&u).await;
    b.open("#/rules").await;
    let switch = format!("#rule-enabled-{rule_id}");
    assert_eq!(b.find(&switch).await.prop("checked").await.unwrap().as_deref(), Some("true"));
    assert_eq!(b.find(&switch).await.attr("role").await.unwrap().as_deref(), Some("switch"));
    let labelled = b.js(&format!("return document.querySelector('{switch}').labels[0].textContent")).await;
    assert!(labelled.as_str().unwrap().contains("Enable rule r.echo"), "{labelled}");

    b.click(&switch).await;
    eventually("the rule to be disabled", WAIT, || async {
        (app.get(&u, &format!("/api/v1/rules/{rule_id}")).await.body["enabled"] == false).then_some(())
    })
    .await;
    b.until(
        "the status line",
        "return document.getElementById('rules-status').textContent === 'Rule r.echo disabled.'",
    )
    .await;
    b.open("#/rules").await;
    b.until("the switch off after a reload", &format!("return document.querySelector('{switch}')?.checked === false"))
        .await;
    // Keyboard: Space on the focused switch turns it back on.
    b.js(&format!("document.querySelector('{switch}').focus(); return null")).await;
    b.find(&switch).await.send_keys(" ").await.unwrap();
    eventually("the rule to be enabled", WAIT, || async {
        (app.get(&u, &format!("/api/v1/rules/{rule_id}")).await.body["enabled"] == true).then_some(())
    })
    .await;
    // System rules and viewers cannot toggle.
    let viewer = app.add_user(&u, "consoleviewer", "viewer").await;
    b.click("#logout").await;
    b.login(&viewer).await;
    b.open("#/rules").await;
    assert_eq!(b.find(&switch).await.prop("disabled").await.unwrap().as_deref(), Some("true"));
    b.close().await;
}

/// An action's page has a form generated from its parameter schema (one control per kind);
/// submitting it runs the action and opens the new execution, whose secret parameter shows
/// masked.
#[tokio::test]
async fn t16_console_run_action_from_generated_form() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("consolerun").await;
    created(&app, &u, "/api/v1/packs", json!({"ref": "tools", "version": "1.0.0"})).await;
    created(&app, &u, "/api/v1/actions", json!({"ref": "tools.greet", "runner_type": "python",
        "description": "Greets someone",
        "code": "def run(params):\n    n = params['times']\n    word = params['greeting'].upper() if params['loud'] else params['greeting']\n    return {'said': ' '.join([word + ' ' + params['name']] * n), 'token_len': len(params['token'])}\n",
        "parameters": {
            "name": {"type": "string", "required": true, "description": "Who to greet"},
            "greeting": {"type": "string", "enum": ["hello", "howdy"], "default": "hello"},
            "times": {"type": "integer", "default": 1, "minimum": 1},
            "loud": {"type": "boolean", "default": false},
            "token": {"type": "string", "secret": true, "required": true}}}))
    .await;

    let b = Browser::start(&app.url).await;
    b.login(&u).await;
    b.open("#/packs").await;
    b.click("li[data-pack-ref='tools'] a").await;
    b.click("tr[data-action-ref='tools.greet'] a").await;
    b.find("#run-action").await;
    let kinds = b
        .js("const f = document.getElementById('run-action'); return ['name','greeting','times','loud','token'].map(n => \
             f.elements[n].tagName.toLowerCase() + ':' + (f.elements[n].type || '') + ':' + f.elements[n].required)")
        .await;
    assert_eq!(
        kinds,
        json!([
            "input:text:true",
            "select:select-one:false",
            "input:number:false",
            "input:checkbox:false",
            "input:password:true"
        ])
    );
    assert_eq!(b.js("return document.getElementById('run-action-times').value").await, "1", "defaults are filled in");
    assert_eq!(
        b.js("return document.getElementById('run-action-name').getAttribute('aria-describedby')").await,
        "run-action-name-hint"
    );

    b.type_into("#run-action-name", "Ada").await;
    b.find("#run-action-greeting").await.select_by_label("howdy").await.unwrap();
    b.type_into("#run-action-times", "2").await;
    b.click("#run-action-loud").await;
    b.type_into("#run-action-token", "s3cr3t-value").await;
    b.mark().await;
    b.click("#run-action-submit").await;

    let hash = b
        .until("the execution page", "return /^#\\/executions\\/\\d+$/.test(location.hash) ? location.hash : null")
        .await;
    let id: i64 = hash.as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap();
    b.until(
        "the run to succeed",
        "return document.querySelector('#execution-summary [data-status]')?.dataset.status === 'succeeded'",
    )
    .await;
    let result =
        b.until("the output", "return document.querySelector('#execution-result pre.json')?.textContent || null").await;
    let output: Value = serde_json::from_str(result.as_str().unwrap()).unwrap();
    assert_eq!(output, json!({"said": "HOWDY Ada HOWDY Ada", "token_len": 12}));
    let params = b.js("return document.getElementById('execution-parameters').textContent").await;
    assert!(params.as_str().unwrap().contains("********"), "the secret is masked: {params}");
    assert!(!b.js("return document.body.textContent").await.as_str().unwrap().contains("s3cr3t-value"));
    b.not_reloaded().await;
    let run = app.get(&u, &format!("/api/v1/executions/{id}")).await;
    assert_eq!(run.body["parameters"]["name"], "Ada");
    assert_eq!(run.body["parameters"]["times"], 2);
    assert_eq!(run.body["parameters"]["loud"], true);
    b.screenshot("action-run").await;

    // A run the API refuses shows its message in the form, and nothing is created.
    b.open("#/actions/tools.greet").await;
    b.type_into("#run-action-name", "Bob").await;
    b.type_into("#run-action-token", "x").await;
    b.type_into("#run-action-times", "1.5").await;
    b.js("document.getElementById('run-action').noValidate = true; return null").await;
    b.click("#run-action-submit").await;
    let error = b.until("the refusal", "return document.getElementById('run-action-error').textContent || null").await;
    assert!(error.as_str().unwrap().contains("times"), "{error}");
    assert_eq!(app.get(&u, "/api/v1/executions").await.body["total"], 1);
    b.close().await;
}

/// The datastore page never shows a secret, hides plain values until asked, and lets an
/// editor set a key; the dashboard counts what happened.
#[tokio::test]
async fn t16_console_datastore_and_dashboard() {
    let app = TestApp::spawn_streaming().await;
    let u = app.register("consolekv").await;
    created(&app, &u, "/api/v1/datastore", json!({"key": "api_token", "value": "hunter2-secret", "encrypted": true}))
        .await;
    created(&app, &u, "/api/v1/datastore", json!({"key": "region", "value": "eu-west"})).await;
    let run =
        created(&app, &u, "/api/v1/executions", json!({"action": "core.echo", "parameters": {"message": "x"}})).await;
    app.finished_execution(&u, run["id"].as_i64().unwrap()).await;

    let b = Browser::start(&app.url).await;
    b.login(&u).await;
    b.until(
        "the succeeded count",
        "return document.querySelector('#dashboard-counts li[data-status=succeeded] .n')?.textContent === '1'",
    )
    .await;
    b.until(
        "the sparkline",
        "return document.getElementById('spark-caption')?.textContent.startsWith('1 execution finished') || null",
    )
    .await;
    b.screenshot("dashboard").await;

    b.open("#/datastore").await;
    b.until("the keys", "return document.querySelectorAll('#datastore-rows tr').length === 2").await;
    let text = b.js("return document.getElementById('datastore-rows').textContent").await;
    assert!(!text.as_str().unwrap().contains("hunter2") && !text.as_str().unwrap().contains("eu-west"), "{text}");
    b.click("tr[data-key='region'] button[aria-pressed]").await;
    assert_eq!(b.js("return document.querySelector(\"tr[data-key='region'] code\").textContent").await, "\"eu-west\"");

    b.type_into("#kv-key", "db_password").await;
    b.type_into("#kv-value", "pa55word").await;
    b.click("#kv-encrypted").await;
    b.click("#datastore-form button[type=submit]").await;
    b.until("the new key", "return document.querySelector(\"tr[data-key='db_password']\") !== null").await;
    assert!(!b.js("return document.body.textContent").await.as_str().unwrap().contains("pa55word"));
    let stored = app.get(&u, "/api/v1/datastore/db_password").await;
    assert_eq!((stored.body["value"].clone(), stored.body["encrypted"].clone()), (json!("pa55word"), json!(true)));
    b.close().await;
}
