//! Foundation: migrations, schema constraints, the private cluster, health and readiness.

use attune_core::local_pg::{Durability, LocalPostgres};
use attune_core::Context;
use attune_tests::{test_config, test_keys, TestApp, TestDb};

const TABLES: &[&str] = &[
    "tenant",
    "identity",
    "refresh_token",
    "pack",
    "action",
    "trigger",
    "sensor",
    "rule",
    "event",
    "enforcement",
    "execution",
    "execution_output",
    "execution_attempt",
    "workflow_state",
    "inquiry",
    "datastore_item",
    "timer_state",
    "sensor_lease",
    "worker",
    "change_log",
    "consumer_cursor",
    "audit_log",
];

#[tokio::test]
async fn migrations_apply_to_an_empty_database_and_are_idempotent() {
    let db = TestDb::empty().await;
    assert!(!attune_core::db::is_ready(&db.pool).await, "an empty database is not ready");
    attune_core::db::migrate(&db.pool).await.expect("migrations apply");
    attune_core::db::migrate(&db.pool).await.expect("a second run is a no-op");
    assert!(attune_core::db::is_ready(&db.pool).await);
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'attune'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    for t in TABLES {
        assert!(tables.iter().any(|x| x == t), "table attune.{t} is missing (have {tables:?})");
    }
}

#[tokio::test]
async fn work_table_claims_are_backed_by_partial_indexes() {
    let db = TestDb::new().await;
    let defs: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'attune' AND indexname IN ('execution_ready', 'execution_requested', 'event_unprocessed', 'timer_state_due')",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let def = |name: &str| defs.iter().find(|(n, _)| n == name).map(|(_, d)| d.clone()).unwrap_or_default();
    assert!(
        def("execution_ready").contains("(priority DESC, run_after, id) WHERE (status = 'scheduled'::text)"),
        "{defs:?}"
    );
    assert!(def("execution_requested").contains("WHERE (status = 'requested'::text)"), "{defs:?}");
    assert!(def("event_unprocessed").contains("WHERE (processed_at IS NULL)"), "{defs:?}");
    assert!(def("timer_state_due").contains("WHERE (next_fire_at IS NOT NULL)"), "{defs:?}");
}

/// The SQLSTATE of a failed statement.
async fn sqlstate(pool: &sqlx::PgPool, sql: &str) -> String {
    match sqlx::query(sql).execute(pool).await {
        Ok(_) => "ok".into(),
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().to_string(),
        Err(e) => panic!("{sql}: {e}"),
    }
}

#[tokio::test]
async fn schema_constraints_hold() {
    let db = TestDb::new().await;
    let p = &db.pool;
    sqlx::query("INSERT INTO attune.tenant (name) VALUES ('a'), ('b')").execute(p).await.unwrap();
    assert_eq!(sqlstate(p, "INSERT INTO attune.pack (tenant_id, ref) VALUES (NULL, 'sys')").await, "ok");
    assert_eq!(
        sqlstate(p, "INSERT INTO attune.pack (tenant_id, ref) VALUES (NULL, 'sys')").await,
        "23505",
        "system refs are unique"
    );
    assert_eq!(sqlstate(p, "INSERT INTO attune.pack (tenant_id, ref) VALUES (1, 'mine')").await, "ok");
    assert_eq!(
        sqlstate(p, "INSERT INTO attune.pack (tenant_id, ref) VALUES (1, 'mine')").await,
        "23505",
        "refs are unique per tenant"
    );
    assert_eq!(
        sqlstate(p, "INSERT INTO attune.pack (tenant_id, ref) VALUES (2, 'mine')").await,
        "ok",
        "another tenant may reuse a ref"
    );
    assert_eq!(sqlstate(p, "INSERT INTO attune.pack (tenant_id, ref) VALUES (1, 'Bad Ref')").await, "23514");
    assert_eq!(
        sqlstate(p, "INSERT INTO attune.execution (tenant_id, action_ref, runner_type, status) VALUES (1, 'x.y', 'shell', 'exploded')").await,
        "23514",
        "execution status is checked"
    );
    assert_eq!(
        sqlstate(p, "INSERT INTO attune.identity (tenant_id, login, password_hash, role) VALUES (1, 'u', 'h', 'god')")
            .await,
        "23514",
        "roles are checked"
    );

    // One enforcement per (rule, event) is the rule engine's event claim, not a constraint
    // (the enforcement table is partitioned by id since migration 42): tested under
    // competing engines in exactly_once.rs.

    // The audit log is append-only.
    sqlx::query("INSERT INTO attune.audit_log (actor_type, action, entity_type) VALUES ('service', 'x', 'y')")
        .execute(p)
        .await
        .unwrap();
    assert_eq!(sqlstate(p, "UPDATE attune.audit_log SET action = 'z'").await, "42501");
    assert_eq!(sqlstate(p, "DELETE FROM attune.audit_log").await, "42501");
    assert_eq!(sqlstate(p, "TRUNCATE attune.audit_log").await, "42501");
}

#[tokio::test]
async fn health_and_ready_answer_over_http() {
    let app = TestApp::spawn().await;
    let health = app.http.get(format!("{}/health", app.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = app.http.get(format!("{}/ready", app.url)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let missing = app.http.get(format!("{}/no/such/route", app.url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

#[tokio::test]
async fn ready_is_503_until_the_database_is_migrated() {
    let db = TestDb::empty().await;
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::new(test_config(dir.path()), db.pool.clone(), test_keys());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = attune_core::Shutdown::new();
    tokio::spawn(attune_api::serve(ctx, listener, shutdown.clone()));
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{url}/health")).send().await.unwrap().status(), 200, "alive even when not ready");
    let before = http.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(before.status(), 503);
    let body: serde_json::Value = before.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("not migrated"), "{body}");
    attune_core::db::migrate(&db.pool).await.unwrap();
    assert_eq!(http.get(format!("{url}/ready")).send().await.unwrap().status(), 200);
    shutdown.cancel();
}

#[tokio::test]
async fn private_cluster_is_reused_and_survives_a_stale_pid_file() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let pg = LocalPostgres::start(&path, Durability::Ephemeral).expect("first start runs initdb");
        assert!(pg.is_running());
        let again =
            LocalPostgres::start(&path, Durability::Ephemeral).expect("a second start joins the running cluster");
        assert!(again.is_running());
        pg.stop().unwrap();
        assert!(!pg.is_running());

        // A killed server's pid file whose pid now belongs to another process.
        let pid_file = pg.data_dir().join("postmaster.pid");
        std::fs::write(&pid_file, format!("{}\n{}\n", std::process::id(), pg.data_dir().display())).unwrap();
        let pg = LocalPostgres::start(&path, Durability::Ephemeral).expect("the stale pid file is handled");
        assert!(pg.is_running());
        pg.stop().unwrap();
    })
    .await
    .unwrap();
}

/// The values a column's CHECK (`col IN (...)`) allows, read from the live schema.
async fn allowed_values(db: &TestDb, table: &str, column: &str) -> Vec<String> {
    let defs: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint
          WHERE conrelid = ('attune.' || $1)::regclass AND contype = 'c'",
    )
    .bind(table)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let def = defs
        .iter()
        .find(|d| d.contains(&format!("({column} = ANY")) || d.contains(&format!("(({column} = ANY")))
        .unwrap_or_else(|| panic!("a CHECK on {table}.{column}: {defs:?}"));
    let mut values: Vec<String> = def.split('\'').skip(1).step_by(2).map(str::to_string).collect();
    values.sort();
    values
}

fn sorted(names: impl IntoIterator<Item = &'static str>) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().map(str::to_string).collect();
    v.sort();
    v
}

#[tokio::test]
async fn status_and_kind_checks_match_the_core_enums() {
    use attune_core::domain::rbac::Role;
    use attune_core::domain::{EnforcementStatus, ExecutionStatus, RunnerType, TriggerType, WorkerStatus};
    let db = TestDb::new().await;
    let cases = [
        ("execution", "status", sorted(ExecutionStatus::ALL.map(ExecutionStatus::as_str))),
        ("enforcement", "status", sorted(EnforcementStatus::ALL.map(EnforcementStatus::as_str))),
        ("worker", "status", sorted(WorkerStatus::ALL.map(WorkerStatus::as_str))),
        ("identity", "role", sorted(Role::ALL.map(Role::as_str))),
        ("action", "runner_type", sorted(RunnerType::ALL.map(RunnerType::as_str))),
        ("trigger", "type", sorted(TriggerType::ALL.map(TriggerType::as_str))),
    ];
    for (table, column, expected) in cases {
        assert_eq!(allowed_values(&db, table, column).await, expected, "{table}.{column}");
    }
}

/// A pooled connection is handed out without a check while it was used within the last
/// `TRUSTED_IDLE` (no round trip of its own per statement: a session that died meanwhile
/// fails that one statement, and the pool then opens a new one), and checked — and
/// replaced when its server session is gone — once it sat idle longer.
#[tokio::test]
async fn a_pooled_connection_that_died_while_idle_is_replaced() {
    let db = TestDb::new().await;
    let pool = attune_core::db::connect_with(db.connect_options(), 1).await.unwrap();
    let backend = || async { sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()").fetch_one(&pool).await };
    let admin = &db.pool;
    let kill = |pid: i32| async move {
        let killed: bool =
            sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)").bind(pid).fetch_one(admin).await.unwrap();
        assert!(killed);
    };
    let first = backend().await.unwrap();
    assert_eq!(backend().await.unwrap(), first, "one connection, reused");

    // Used just now: not checked, so the dead session fails one statement. (sqlx checks a
    // connection as it goes back to the pool, in the background: let that finish first.)
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    kill(first).await;
    assert!(backend().await.is_err(), "a connection used within the window is handed out unchecked");
    let second = backend().await.expect("the broken connection was closed; a new one serves");
    assert_ne!(second, first);

    // Idle longer than the window: checked, replaced, no statement fails.
    kill(second).await;
    tokio::time::sleep(attune_core::db::TRUSTED_IDLE + std::time::Duration::from_millis(200)).await;
    let third = backend().await.expect("the dead connection is found by the check and replaced");
    assert_ne!(third, second);
}

/// A service loop's kept connection (`attune_core::held::Held`): the same session from one
/// round to the next; after an error (here the session is ended from outside, as a server
/// restart would) and a reset, the loop goes on with a new one.
#[tokio::test]
async fn a_held_connection_keeps_its_session_and_is_replaced_after_an_error() {
    let db = TestDb::new().await;
    let mut held = attune_core::held::Held::new(db.pool.clone());
    async fn pid(conn: &mut sqlx::PgConnection) -> Result<i32, sqlx::Error> {
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(conn).await
    }
    let first = pid(held.get().await.unwrap()).await.unwrap();
    assert_eq!(pid(held.get().await.unwrap()).await.unwrap(), first, "the same session is kept");
    sqlx::query("SELECT pg_terminate_backend($1)").bind(first).execute(&db.pool).await.unwrap();
    assert!(pid(held.get().await.unwrap()).await.is_err(), "the ended session fails");
    held.reset();
    let second = pid(held.get().await.unwrap()).await.unwrap();
    assert_ne!(second, first);
    assert_eq!(pid(held.get().await.unwrap()).await.unwrap(), second);
}
