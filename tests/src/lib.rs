//! The end-to-end suite's harness.
//!
//! - [`TestDb`]: a fresh database per test, cloned from a migrated template
//!   (`CREATE DATABASE … TEMPLATE …`), dropped when the test ends. The server is the one
//!   named by `ATTUNE_TEST_DATABASE_URL`, else a private cluster under the system temp
//!   dir that the first test of a run starts and later runs reuse (data never is: each
//!   run migrates its own template). On the private cluster the harness connects as its
//!   superuser `postgres` with the generated password (`<root>/secrets/postgres_password`).
//! - [`TestApp`]: the API (and, as later issues add them, the other services) running
//!   in-process on port 0 against a [`TestDb`], with a real HTTP client.
//!   [`TestApp::spawn_streaming`] also serves the notifier's `/ws` on the API's port, as
//!   `attune up` does; [`stream::Socket`] is a real WebSocket client for it.
//!
//! Tests are named after the test plan's scenarios (`t1_4_webhook_payload_reaches_action`).

pub mod processes;
pub mod stream;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attune_core::bootstrap::Keys;
use attune_core::keyring::Keyring;
use attune_core::local_pg::{Durability, LocalPostgres};
use attune_core::{Config, Context, Shutdown};
use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::OnceCell;

/// Databases of this harness older than this are dropped as leftovers of killed runs.
const STALE_AFTER_SECS: u64 = 6 * 3600;

struct Server {
    /// Maintenance database of the server.
    admin: PgConnectOptions,
    /// A URL of the server with `{db}` where the database name goes (for child processes).
    url_pattern: String,
    template: String,
    /// Keeps the private cluster's handle alive (it is left running for the next run).
    _local: Option<LocalPostgres>,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// Identifies one run of the suite: nextest runs each test in its own process and gives
/// them one `NEXTEST_RUN_ID`; under `cargo test` one process is one run.
fn run_key() -> String {
    let raw = std::env::var("NEXTEST_RUN_ID").unwrap_or_else(|_| std::process::id().to_string());
    attune_core::local_pg::short_hash(Path::new(&raw))
}

/// Started once per process; the template once per run (an advisory lock serialises the
/// processes of a run).
async fn server() -> &'static Server {
    SERVER
        .get_or_init(|| async {
            let (admin, url_pattern, local) = match std::env::var("ATTUNE_TEST_DATABASE_URL") {
                Ok(url) => {
                    let options = url.parse::<PgConnectOptions>().expect("ATTUNE_TEST_DATABASE_URL is a postgres URL");
                    let (base, query) = url.split_once('?').map_or((url.as_str(), None), |(b, q)| (b, Some(q)));
                    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
                    let pattern = format!("{server}/{{db}}{}", query.map(|q| format!("?{q}")).unwrap_or_default());
                    (options, pattern, None)
                }
                Err(_) => {
                    let root = std::env::temp_dir()
                        .join(format!("attune-test-{}", attune_core::local_pg::short_hash(&workspace_root())));
                    let local = tokio::task::spawn_blocking(move || LocalPostgres::start(&root, Durability::Ephemeral))
                        .await
                        .expect("cluster start does not panic")
                        .unwrap_or_else(|e| panic!("cannot start the private test cluster: {e}"));
                    // The cluster's superuser, with its generated password (tests are trusted
                    // code: they create and drop databases and look behind the services' backs).
                    let pattern = local.superuser_url("{db}");
                    (local.superuser_options("postgres"), pattern, Some(local))
                }
            };
            let template = ensure_template(&admin).await;
            Server { admin, url_pattern, template, _local: local }
        })
        .await
}

async fn ensure_template(admin: &PgConnectOptions) -> String {
    let key = run_key();
    let mut conn = PgConnection::connect_with(admin).await.expect("connect to the test server");
    sqlx::query("SELECT pg_advisory_lock(hashtext('attune-test-template'))").execute(&mut conn).await.unwrap();
    let existing: Option<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
        .bind(format!("attune_tpl_%_{key}"))
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    let template = match existing {
        Some(name) => name,
        None => {
            drop_stale(&mut conn).await;
            let name = format!("attune_tpl_{}_{key}", now_secs());
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
            let pool = attune_core::db::connect_with(admin.clone().database(&name), 2).await.unwrap();
            attune_core::db::migrate(&pool).await.expect("migrations apply to the template");
            pool.close().await;
            name
        }
    };
    sqlx::query("SELECT pg_advisory_unlock(hashtext('attune-test-template'))").execute(&mut conn).await.unwrap();
    conn.close().await.ok();
    template
}

/// Drops this harness's databases left behind by runs that were killed.
async fn drop_stale(conn: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname ~ '^attune_(t|tpl)_[0-9]+_'")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    let cutoff = now_secs().saturating_sub(STALE_AFTER_SECS);
    for name in names {
        let created: u64 = name.split('_').nth(2).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        if created < cutoff {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut *conn).await;
        }
    }
}

/// The repository root (for fixtures and the core pack).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_path_buf()
}

/// A test pack fixture directory, `tests/fixtures/packs/NAME`.
pub fn fixture_pack(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/packs").join(name)
}

/// A fresh, migrated database of its own for one test. Dropped when this is dropped.
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    admin: PgConnectOptions,
    url_pattern: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        init_tracing();
        let server = server().await;
        let suffix: String =
            rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(10).map(char::from).collect();
        let name = format!("attune_t_{}_{}", now_secs(), suffix.to_lowercase());
        let mut conn = PgConnection::connect_with(&server.admin).await.expect("connect to the test server");
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {}", server.template))
            .execute(&mut conn)
            .await
            .expect("clone the template database");
        conn.close().await.ok();
        let pool = attune_core::db::connect_with(server.admin.clone().database(&name), 10)
            .await
            .expect("connect to the test database");
        TestDb { pool, name, admin: server.admin.clone(), url_pattern: server.url_pattern.clone() }
    }

    /// An empty database (no migrations), for testing the migrations themselves.
    pub async fn empty() -> TestDb {
        init_tracing();
        let server = server().await;
        let name = format!("attune_t_{}_empty{}", now_secs(), rand::thread_rng().gen::<u32>());
        let mut conn = PgConnection::connect_with(&server.admin).await.expect("connect to the test server");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
        conn.close().await.ok();
        let pool = attune_core::db::connect_with(server.admin.clone().database(&name), 5).await.unwrap();
        TestDb { pool, name, admin: server.admin.clone(), url_pattern: server.url_pattern.clone() }
    }

    /// Connection options of this database (for a second, independent pool).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.name)
    }

    /// This database's URL (for `attune` processes the test starts).
    pub fn url(&self) -> String {
        self.url_pattern.replace("{db}", &self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // The test's runtime may be shutting down: drop on a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A configuration for tests: defaults, with a data dir of its own.
/// Registration is open (every test registers its own tenant), path loads may read the
/// fixtures and the temp dir.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config { data_dir: data_dir.to_path_buf(), ..Config::default() };
    config.api.port = 0;
    config.auth.allow_registration = true;
    config.packs.path_roots = vec![workspace_root().join("tests/fixtures"), std::env::temp_dir()];
    config
}

/// Random keys; the JWT secret is text, so `attune` processes of a test can be given the
/// same keys through the environment ([`TestApp::process_env`]).
pub fn test_keys() -> Keys {
    let mut rng = rand::thread_rng();
    let mut encryption_key = [0u8; 32];
    rng.fill(&mut encryption_key);
    let jwt_secret = rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(40).collect();
    Keys { jwt_secret, encryption: Keyring::single(encryption_key) }
}

/// The API running in-process on a port of its own, against a fresh database.
pub struct TestApp {
    pub db: TestDb,
    pub ctx: Context,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub http: reqwest::Client,
    pub shutdown: Shutdown,
    /// The notifier's hub, when the app serves `/ws` ([`TestApp::spawn_streaming`]).
    pub hub: Option<attune_notifier::Hub>,
    _data_dir: tempfile::TempDir,
}

impl TestApp {
    /// Fresh database, system packs loaded, API served on port 0.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_serving(adjust, false).await
    }

    /// The whole pipeline ([`TestApp::spawn_pipeline`]) with the notifier: its hub reads the
    /// change log and `/ws` is served on the API's port, as `attune up` does. Returns once
    /// the hub streams.
    pub async fn spawn_streaming() -> TestApp {
        Self::spawn_streaming_with(|_| {}).await
    }

    pub async fn spawn_streaming_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let app = Self::spawn_serving(adjust, true).await;
        app.start_executor();
        app.start_worker();
        app
    }

    /// `ws://127.0.0.1:PORT/ws`
    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.url.replacen("http://", "ws://", 1))
    }

    /// The API (and with `streaming`, the notifier's hub and `/ws`), on port 0.
    async fn spawn_serving(adjust: impl FnOnce(&mut Config), streaming: bool) -> TestApp {
        let db = TestDb::new().await;
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        config.api.port = addr.port();
        adjust(&mut config);
        attune_core::bootstrap::load_system_packs(&db.pool, &config).await.expect("system packs load");
        let ctx = Context::new(config, db.pool.clone(), test_keys());
        let shutdown = Shutdown::new();
        let hub = streaming.then(|| attune_notifier::Hub::new(ctx.clone()));
        let extra = hub.as_ref().map(attune_notifier::Hub::router).unwrap_or_default();
        tokio::spawn(attune_api::serve_with(ctx.clone(), listener, shutdown.clone(), extra));
        if let Some(hub) = &hub {
            let (reader, stop) = (hub.clone(), shutdown.clone());
            tokio::spawn(async move { reader.run(stop).await });
            hub.ready().await;
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        TestApp { db, ctx, url: format!("http://{addr}"), http, shutdown, hub, _data_dir: data_dir }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// The API plus the whole pipeline in-process: executor (rule engine, scheduler) and
    /// a worker, as `attune up` runs them.
    pub async fn spawn_pipeline() -> TestApp {
        Self::spawn_pipeline_with(|_| {}).await
    }

    pub async fn spawn_pipeline_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let app = Self::spawn_with(adjust).await;
        app.start_executor();
        app.start_worker();
        app
    }

    /// A context like the app's, with a connection pool of its own (a separate process's view).
    pub async fn separate_context(&self) -> Context {
        let pool = attune_core::db::connect_with(self.db.connect_options(), 10).await.expect("a second pool");
        self.ctx.with_pool(pool)
    }

    /// Starts one more executor (rule engine and scheduler) on this app's database.
    pub fn start_executor(&self) {
        tokio::spawn(attune_executor::run(self.ctx.clone(), self.shutdown.clone()));
    }

    /// Starts a sensor service (timers) on this app's database; cancel the returned token
    /// to stop just that one.
    pub fn start_sensor(&self) -> Shutdown {
        let token = self.shutdown.child_token();
        tokio::spawn(attune_sensor::run(self.ctx.clone(), token.clone()));
        token
    }

    /// Starts one more worker on this app's database.
    pub fn start_worker(&self) {
        tokio::spawn(attune_worker::run(self.ctx.clone(), self.shutdown.clone()));
    }

    /// The environment that points an `attune` process at this app: its database, its
    /// keys and settings, a data dir of its own.
    pub fn process_env(&self) -> HashMap<String, String> {
        let keys = &self.ctx.keys;
        let data_dir = self._data_dir.path().join(format!("process-{}", rand::thread_rng().gen::<u32>()));
        HashMap::from([
            ("ATTUNE_DATABASE_URL".to_string(), self.db.url()),
            ("ATTUNE_JWT_SECRET".to_string(), String::from_utf8(keys.jwt_secret.clone()).expect("text secret")),
            ("ATTUNE_ENCRYPTION_KEY".to_string(), keys.encryption.formatted().0),
            ("ATTUNE_ENCRYPTION_PREVIOUS_KEYS".to_string(), keys.encryption.formatted().1.join(",")),
            ("ATTUNE_DATA_DIR".to_string(), data_dir.to_string_lossy().into_owned()),
            ("ATTUNE_PUBLIC_URL".to_string(), self.url.clone()),
            ("RUST_LOG".to_string(), "info,sqlx=warn".to_string()),
            ("ATTUNE_ALLOW_REGISTRATION".to_string(), "true".to_string()),
        ])
    }
}

/// Polls `check` until it returns Some, failing the test after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct-horse-battery";

/// A logged-in user of a [`TestApp`].
#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub tenant_id: i64,
    pub token: String,
    pub refresh_token: String,
}

/// What an execution wrote on its way to running ([`TestApp::trail`]).
#[derive(Debug)]
pub struct Trail {
    /// Its change-log events, each with the status its message carries, in order.
    pub changes: Vec<(String, String)>,
    /// Its audit entries (action, actor type), in order.
    pub audits: Vec<(String, String)>,
    /// Whether its `execution.started` entry was written in the transaction of its first
    /// entry (requested, or scheduled for a workflow's task): handed to a lane of the
    /// creating process (`attune_core::handoff`), not claimed.
    pub handed: bool,
    /// Its attempt rows (worker, tenant), in order.
    pub attempts: Vec<(i64, i64)>,
}

/// An HTTP answer: status and JSON body (Null when the body is empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub headers: reqwest::header::HeaderMap,
}

impl TestApp {
    /// Sends `method path` with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("the API answers");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer { status, body, headers }
    }

    pub async fn get(&self, user: &User, path: &str) -> Answer {
        self.call(Some(&user.token), reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, user: &User, path: &str, body: serde_json::Value) -> Answer {
        self.call(Some(&user.token), reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, user: &User, path: &str, body: serde_json::Value) -> Answer {
        self.call(Some(&user.token), reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, user: &User, path: &str) -> Answer {
        self.call(Some(&user.token), reqwest::Method::DELETE, path, None).await
    }

    /// POSTs raw bytes (a pack archive) with `content_type` as `user`.
    pub async fn post_bytes(&self, user: &User, path: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let res = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&user.token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("the API answers");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer { status, body, headers }
    }

    /// Registers `login` (a new tenant, its admin) and logs in.
    pub async fn register(&self, login: &str) -> User {
        let a = self
            .call(
                None,
                reqwest::Method::POST,
                "/auth/register",
                Some(serde_json::json!({"login": login, "password": PASSWORD})),
            )
            .await;
        assert_eq!(a.status, 201, "register {login}: {:?}", a.body);
        self.login(login, PASSWORD).await
    }

    pub async fn login(&self, login: &str, password: &str) -> User {
        let a = self
            .call(
                None,
                reqwest::Method::POST,
                "/auth/login",
                Some(serde_json::json!({"login": login, "password": password})),
            )
            .await;
        assert_eq!(a.status, 200, "login {login}: {:?}", a.body);
        let token = a.body["access_token"].as_str().unwrap().to_string();
        let me = self.call(Some(&token), reqwest::Method::GET, "/auth/me", None).await;
        User {
            id: me.body["id"].as_i64().unwrap(),
            login: login.to_string(),
            tenant_id: me.body["tenant_id"].as_i64().unwrap(),
            token,
            refresh_token: a.body["refresh_token"].as_str().unwrap().to_string(),
        }
    }

    /// What execution `id` wrote on its way to running, read from the database (see [`Trail`]).
    pub async fn trail(&self, id: i64) -> Trail {
        let pool = self.pool();
        let changes = sqlx::query_as(
            "SELECT event, attune.change_json(data)->>'status' FROM attune.change_log
              WHERE entity_type = 'execution' AND entity_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap();
        let audits = sqlx::query_as(
            "SELECT action, actor_type FROM attune.audit_log WHERE entity_type = 'execution' AND entity_id = $1 ORDER BY id",
        )
        .bind(id.to_string())
        .fetch_all(pool)
        .await
        .unwrap();
        let handed = sqlx::query_scalar(
            "SELECT COALESCE(
                 (SELECT xmin::text FROM attune.audit_log
                   WHERE entity_type = 'execution' AND entity_id = $1 ORDER BY id LIMIT 1)
                 = (SELECT xmin::text FROM attune.audit_log
                     WHERE entity_type = 'execution' AND entity_id = $1 AND action = 'execution.started'
                     ORDER BY id LIMIT 1),
                 false)",
        )
        .bind(id.to_string())
        .fetch_one(pool)
        .await
        .unwrap();
        let attempts = sqlx::query_as(
            "SELECT worker_id, tenant_id FROM attune.execution_attempt WHERE execution_id = $1 ORDER BY attempt",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .unwrap();
        Trail { changes, audits, handed, attempts }
    }

    /// Waits until execution `id` has ended (any final status) and returns it.
    pub async fn finished_execution(&self, user: &User, id: i64) -> serde_json::Value {
        const FINAL: &[&str] = &["succeeded", "failed", "canceled", "succeeded_with_errors"];
        eventually(&format!("execution {id} to finish"), Duration::from_secs(60), || async {
            let a = self.get(user, &format!("/api/v1/executions/{id}")).await;
            FINAL.contains(&a.body["status"].as_str().unwrap_or_default()).then_some(a.body)
        })
        .await
    }

    /// One history maintenance pass (cuts and retention) at `at` for `families` (all when
    /// empty) with the app's configured retention; returns what retention did. The
    /// executor's own maintenance may hold the lead for a moment: tried until this pass
    /// got every table.
    pub async fn maintain_history(
        &self,
        families: &[attune_core::history::Family],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Vec<attune_core::history::Outcome> {
        let mut policies = attune_core::history::Policy::from_config(&self.ctx.config);
        policies.retain(|p| families.is_empty() || families.contains(&p.family));
        for _ in 0..100 {
            let report = attune_core::history::maintain(self.pool(), &policies, Some(at)).await;
            assert_eq!(report.failed, vec![], "the maintenance runs");
            if report.skipped.is_empty() {
                return report.outcomes;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the history maintenance never got the lead");
    }

    /// POSTs `payload` to a webhook URL; returns the event id.
    pub async fn fire(&self, webhook_url: &str, payload: serde_json::Value) -> i64 {
        let res = self.http.post(webhook_url).json(&payload).send().await.expect("the webhook answers");
        assert_eq!(res.status().as_u16(), 202);
        let body: serde_json::Value = res.json().await.unwrap();
        body["event_id"].as_i64().unwrap()
    }

    /// Adds a user with `role` to `admin`'s tenant and logs in as it.
    pub async fn add_user(&self, admin: &User, login: &str, role: &str) -> User {
        let a = self
            .post(admin, "/api/v1/users", serde_json::json!({"login": login, "password": PASSWORD, "role": role}))
            .await;
        assert_eq!(a.status, 201, "add user {login}: {:?}", a.body);
        self.login(login, PASSWORD).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
    });
}
