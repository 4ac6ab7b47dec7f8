//! The reporting views of schema `attune_reporting` (sql/reporting/, docs/reporting.md)
//! return the right figures for a seeded data set; a BI login made by
//! `attune reporting grant` reads its own tenant only, whatever it sets, and writes
//! nothing. The figures asserted here are the ones docs/reporting.md shows.

use std::process::Command;

use attune_tests::processes::attune_binary;
use attune_tests::TestDb;
use rand::Rng;
use sqlx::{Connection, PgConnection, PgPool};

/// Two tenants' history at fixed times (2026-01-01, UTC). Returns (tenant A, tenant B).
///
/// Tenant `rep_a`: rule `a.match` enforced 3 of 4 processed events of trigger `a.hook`
/// (rule `a.none`, same trigger, none); its executions of `a.echo` started 1, 2 and 4 s
/// after their event and ran 10, 20, 30 s (succeeded, succeeded, failed); `a.flaky` ran by
/// hand 5 s (failed) and 1 s (canceled); the queue holds 2 requested, 1 scheduled and 1
/// running `a.echo` (on worker w1); 3 inquiries, answered after 60 s and 120 s, 1 pending.
/// Tenant `rep_b`: one failed `a.echo` (100 s) and one running on w1.
/// Workers: w1 active, 4 slots, 2 running; w2 stopped.
async fn seed(pool: &PgPool) -> (i64, i64) {
    let seed = r#"
INSERT INTO attune.tenant (id, name) VALUES (901, 'rep_a'), (902, 'rep_b');
INSERT INTO attune.pack (id, tenant_id, ref) VALUES (901, 901, 'a');
INSERT INTO attune.action (id, tenant_id, pack_id, ref, runner_type) VALUES
    (901, 901, 901, 'a.echo', 'shell'), (902, 901, 901, 'a.flaky', 'shell');
INSERT INTO attune.trigger (id, tenant_id, pack_id, ref, type) VALUES (901, 901, 901, 'a.hook', 'custom');
INSERT INTO attune.rule (id, tenant_id, pack_id, ref, trigger_id, action_id) VALUES
    (901, 901, 901, 'a.match', 901, 901), (902, 901, 901, 'a.none', 901, 902);
INSERT INTO attune.worker (id, name, host, pid, capacity, running, status) VALUES
    (901, 'w1', 'h', 1, 4, 2, 'active'), (902, 'w2', 'h', 2, 4, 0, 'stopped');
INSERT INTO attune.event (id, tenant_id, trigger_id, trigger_ref, created_at, processed_at) VALUES
    (901, 901, 901, 'a.hook', '2026-01-01 10:00:00Z', '2026-01-01 10:00:00.1Z'),
    (902, 901, 901, 'a.hook', '2026-01-01 10:01:00Z', '2026-01-01 10:01:00.1Z'),
    (903, 901, 901, 'a.hook', '2026-01-01 10:02:00Z', '2026-01-01 10:02:00.1Z'),
    (904, 901, 901, 'a.hook', '2026-01-01 10:03:00Z', '2026-01-01 10:03:00.1Z'),
    (905, 901, 901, 'a.hook', '2026-01-01 10:04:00Z', NULL);
INSERT INTO attune.enforcement (id, tenant_id, rule_id, rule_ref, event_id, status) VALUES
    (901, 901, 901, 'a.match', 901, 'processed'),
    (902, 901, 901, 'a.match', 902, 'processed'),
    (903, 901, 901, 'a.match', 903, 'processed');
INSERT INTO attune.execution (id, tenant_id, action_id, action_ref, runner_type, status, enforcement_id,
                              rule_id, rule_ref, worker_id, created_at, started_at, finished_at) VALUES
    (901, 901, 901, 'a.echo', 'shell', 'succeeded', 901, 901, 'a.match', NULL,
     '2026-01-01 10:00:00.5Z', '2026-01-01 10:00:01Z', '2026-01-01 10:00:11Z'),
    (902, 901, 901, 'a.echo', 'shell', 'succeeded', 902, 901, 'a.match', NULL,
     '2026-01-01 10:01:00.5Z', '2026-01-01 10:01:02Z', '2026-01-01 10:01:22Z'),
    (903, 901, 901, 'a.echo', 'shell', 'failed', 903, 901, 'a.match', NULL,
     '2026-01-01 10:02:00.5Z', '2026-01-01 10:02:04Z', '2026-01-01 10:02:34Z'),
    (904, 901, 902, 'a.flaky', 'shell', 'failed', NULL, NULL, NULL, NULL,
     '2026-01-01 11:00:00Z', '2026-01-01 11:00:00Z', '2026-01-01 11:00:05Z'),
    (905, 901, 902, 'a.flaky', 'shell', 'canceled', NULL, NULL, NULL, NULL,
     '2026-01-01 11:05:00Z', '2026-01-01 11:05:00Z', '2026-01-01 11:05:01Z'),
    (906, 901, 901, 'a.echo', 'shell', 'requested', NULL, NULL, NULL, NULL, '2026-01-01 11:10:00Z', NULL, NULL),
    (907, 901, 901, 'a.echo', 'shell', 'requested', NULL, NULL, NULL, NULL, '2026-01-01 11:10:00Z', NULL, NULL),
    (908, 901, 901, 'a.echo', 'shell', 'scheduled', NULL, NULL, NULL, NULL, '2026-01-01 11:10:00Z', NULL, NULL),
    (909, 901, 901, 'a.echo', 'shell', 'running', NULL, NULL, NULL, 901,
     '2026-01-01 11:10:00Z', '2026-01-01 11:10:01Z', NULL),
    (951, 902, NULL, 'a.echo', 'shell', 'failed', NULL, NULL, NULL, NULL,
     '2026-01-01 10:00:00Z', '2026-01-01 10:00:00Z', '2026-01-01 10:01:40Z'),
    (952, 902, NULL, 'a.echo', 'shell', 'running', NULL, NULL, NULL, 901,
     '2026-01-01 10:30:00Z', '2026-01-01 10:30:00Z', NULL);
INSERT INTO attune.inquiry (tenant_id, execution_id, prompt, status, created_at, responded_at) VALUES
    (901, 901, 'ok?', 'responded', '2026-01-01 10:00:00Z', '2026-01-01 10:01:00Z'),
    (901, 902, 'ok?', 'responded', '2026-01-01 10:00:00Z', '2026-01-01 10:02:00Z'),
    (901, 903, 'ok?', 'pending', '2026-01-01 10:00:00Z', NULL);
"#;
    sqlx::raw_sql(seed).execute(pool).await.expect("the seed applies");
    (901, 902)
}

/// One line per row: `sql` selects a single text column.
async fn lines(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sql).fetch_all(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Each view's rows for tenant 901 (or all a reporting login sees, `filter` empty).
async fn figures(conn: &mut PgConnection, filter: &str) -> Vec<(&'static str, Vec<String>)> {
    let queries: [(&str, String); 9] = [
        (
            "executions_per_hour",
            format!(
                "SELECT concat_ws(' ', to_char(hour AT TIME ZONE 'UTC', 'HH24:MI'), action_ref, status, executions)
                   FROM attune_reporting.executions_per_hour {filter} ORDER BY hour, action_ref, status"
            ),
        ),
        (
            "action_duration",
            format!(
                "SELECT concat_ws(' ', action_ref, executions, p50_seconds, p95_seconds, p99_seconds, max_seconds)
                   FROM attune_reporting.action_duration {filter} ORDER BY action_ref"
            ),
        ),
        (
            "action_failure_rate",
            format!(
                "SELECT concat_ws(' ', action_ref, finished, succeeded, succeeded_with_errors, failed, canceled, failure_rate)
                   FROM attune_reporting.action_failure_rate {filter} ORDER BY action_ref"
            ),
        ),
        (
            "rule_failure_rate",
            format!(
                "SELECT concat_ws(' ', rule_ref, finished, succeeded, failed, canceled, failure_rate)
                   FROM attune_reporting.rule_failure_rate {filter} ORDER BY rule_ref"
            ),
        ),
        (
            "rule_hit_rate",
            format!(
                "SELECT concat_ws(' ', rule_ref, events, enforcements, hit_rate)
                   FROM attune_reporting.rule_hit_rate {filter} ORDER BY rule_ref"
            ),
        ),
        (
            "event_to_start_latency",
            format!(
                "SELECT concat_ws(' ', rule_ref, executions, avg_seconds, p50_seconds, p95_seconds, max_seconds)
                   FROM attune_reporting.event_to_start_latency {filter} ORDER BY rule_ref"
            ),
        ),
        (
            "inquiry_response_times",
            format!(
                "SELECT concat_ws(' ', inquiries, pending, responded, expired, p50_seconds, p95_seconds, max_seconds)
                   FROM attune_reporting.inquiry_response_times {filter}"
            ),
        ),
        (
            "worker_utilisation",
            format!(
                "SELECT concat_ws(' ', worker, status, capacity, running, utilisation, tenant_running)
                   FROM attune_reporting.worker_utilisation {filter} ORDER BY worker"
            ),
        ),
        (
            "queue_depth",
            format!(
                "SELECT concat_ws(' ', status, executions, ready, to_char(oldest_created_at AT TIME ZONE 'UTC', 'HH24:MI'))
                   FROM attune_reporting.queue_depth {filter} ORDER BY status"
            ),
        ),
    ];
    let mut out = Vec::new();
    for (name, sql) in queries {
        out.push((name, lines(conn, &sql).await));
    }
    out
}

/// Tenant rep_a's figures, as docs/reporting.md shows them.
fn expected_a() -> Vec<(&'static str, Vec<String>)> {
    let v = |rows: &[&str]| rows.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    vec![
        (
            "executions_per_hour",
            v(&[
                "10:00 a.echo failed 1",
                "10:00 a.echo succeeded 2",
                "11:00 a.echo requested 2",
                "11:00 a.echo running 1",
                "11:00 a.echo scheduled 1",
                "11:00 a.flaky canceled 1",
                "11:00 a.flaky failed 1",
            ]),
        ),
        ("action_duration", v(&["a.echo 3 20.000 29.000 29.800 30.000", "a.flaky 2 3.000 4.800 4.960 5.000"])),
        ("action_failure_rate", v(&["a.echo 3 2 0 1 0 0.3333", "a.flaky 2 0 0 1 1 0.5000"])),
        ("rule_failure_rate", v(&["a.match 3 2 1 0 0.3333"])),
        ("rule_hit_rate", v(&["a.match 4 3 0.7500", "a.none 4 0 0.0000"])),
        ("event_to_start_latency", v(&["a.match 3 2.333 2.000 3.800 4.000"])),
        ("inquiry_response_times", v(&["3 1 2 0 90.000 117.000 120.000"])),
        ("worker_utilisation", v(&["w1 active 4 2 0.5000 1"])),
        ("queue_depth", v(&["requested 2 2 11:10", "running 1 1 11:10", "scheduled 1 1 11:10"])),
    ]
}

/// Moves the seeded rows' id sequences past them (the seed writes its own ids; real rows
/// take theirs from the sequences, which is what the rollup's cursor follows).
async fn ids_past_the_seed(pool: &PgPool) {
    sqlx::raw_sql(
        "SELECT setval(pg_get_serial_sequence('attune.' || f, 'id'), 1000)
           FROM unnest(ARRAY['execution', 'event', 'enforcement']) f",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// Runs the maintenance's rollup until every family's cursor is past id 1000 and no
/// pending row is finished (the cursor waits for the transactions running meanwhile, and
/// a moment, before it moves).
async fn roll_up_everything(pool: &PgPool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        for (family, outcome) in attune_core::history::rollup::roll_up(pool, std::time::Duration::from_secs(10)).await {
            outcome.unwrap_or_else(|e| panic!("rollup of {family:?}: {e}"));
        }
        let behind: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM attune.history_rollup_cursor WHERE below < 1000)
                  + (SELECT count(*) FROM attune.history_rollup_pending p JOIN attune.execution e ON e.id = p.id
                      WHERE p.family = 'execution' AND e.status IN ('succeeded', 'failed', 'canceled'))
                  + (SELECT count(*) FROM attune.history_rollup_pending p JOIN attune.event ev ON ev.id = p.id
                      WHERE p.family = 'event' AND ev.processed_at IS NOT NULL)",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if behind == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the rollup did not catch up in 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Every view's figures for both tenants computed from the tables alone: the rollups
/// emptied and the cursors put back to 0 in a transaction that is rolled back.
async fn figures_without_rollups(pool: &PgPool) -> Vec<(&'static str, Vec<String>)> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::raw_sql(
        "UPDATE attune.history_rollup_cursor SET below = 0;
         DELETE FROM attune.history_rollup_pending;
         DELETE FROM attune.execution_rollup; DELETE FROM attune.execution_duration_rollup;
         DELETE FROM attune.execution_latency_rollup; DELETE FROM attune.event_rollup;
         DELETE FROM attune.enforcement_rollup;",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let out = figures(&mut tx, "WHERE tenant_id IN (901, 902)").await;
    tx.rollback().await.unwrap();
    out
}

/// executions_per_hour of tenant 901 read in time zone `zone`, from the rollups and from
/// the tables alone (the rollups emptied in a transaction rolled back).
async fn hours_in_zone(pool: &PgPool, zone: &str) -> (Vec<String>, Vec<String>) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("SET LOCAL TimeZone = '{zone}'")).execute(&mut *tx).await.unwrap();
    let sql = "SELECT concat_ws(' ', to_char(hour, 'HH24:MI'), action_ref, status, executions)
                 FROM attune_reporting.executions_per_hour WHERE tenant_id = 901 ORDER BY hour, action_ref, status";
    let rolled = lines(&mut tx, sql).await;
    sqlx::raw_sql(
        "UPDATE attune.history_rollup_cursor SET below = 0; DELETE FROM attune.history_rollup_pending;
         DELETE FROM attune.execution_rollup;",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let raw = lines(&mut tx, sql).await;
    tx.rollback().await.unwrap();
    (rolled, raw)
}

#[tokio::test]
async fn rolled_up_history_gives_the_same_figures_and_leaves_with_its_partition() {
    let db = TestDb::new().await;
    let (a, _) = seed(&db.pool).await;
    ids_past_the_seed(&db.pool).await;
    let both = "WHERE tenant_id IN (901, 902)";
    let mut conn = db.pool.acquire().await.unwrap();
    let before = figures(&mut conn, both).await;
    roll_up_everything(&db.pool).await;

    // Every finished row is counted in the rollups; the rows in flight wait as pending.
    let rolled: Vec<String> = lines(
        &mut conn,
        "SELECT concat_ws(' ', 'executions', (SELECT sum(executions) FROM attune.execution_rollup),
                          'events', (SELECT sum(events) FROM attune.event_rollup),
                          'enforcements', (SELECT sum(enforcements) FROM attune.enforcement_rollup),
                          'pending', (SELECT string_agg(family || ':' || id, ',' ORDER BY family, id)
                                        FROM attune.history_rollup_pending))",
    )
    .await;
    assert_eq!(
        rolled,
        vec!["executions 6 events 4 enforcements 3 pending event:905,execution:906,execution:907,execution:908,execution:909,execution:952"]
    );
    let after = figures(&mut conn, both).await;
    assert_eq!(after, before, "the same figures from the rollups");
    assert_eq!(figures(&mut conn, &format!("WHERE tenant_id = {a}")).await, expected_a());
    // Hours are the reader's: in a time zone half an hour off UTC too.
    let (rolled, raw) = hours_in_zone(&db.pool, "Asia/Kolkata").await;
    assert_eq!(rolled, raw);
    assert_eq!(rolled[0], "15:00 a.echo failed 1", "10:02 UTC is 15:32 in Kolkata");

    // Work in flight finishes: it leaves the pending list for the rollups, and the
    // figures are those the tables alone give.
    sqlx::raw_sql(
        "UPDATE attune.execution SET status = 'succeeded', finished_at = started_at + interval '12.3456 s' WHERE id = 909;
         UPDATE attune.execution SET status = 'failed', started_at = created_at + interval '0.25 s',
                                     finished_at = created_at + interval '1.5 s' WHERE id IN (906, 907);
         UPDATE attune.event SET processed_at = created_at WHERE id = 905;",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    roll_up_everything(&db.pool).await;
    let pending: Vec<String> =
        lines(&mut conn, "SELECT family || ':' || id FROM attune.history_rollup_pending ORDER BY family, id").await;
    assert_eq!(pending, vec!["execution:908", "execution:952"]);
    let after = figures(&mut conn, both).await;
    assert_eq!(after, figures_without_rollups(&db.pool).await);
    let durations = after.iter().find(|(n, _)| *n == "action_duration").unwrap();
    // 12.3456 s is counted as 12.3 (3 significant digits: the median of the exact run
    // times would be 11.173); the maximum stays exact.
    assert_eq!(durations.1[0], "a.echo 6 11.150 27.500 29.500 30.000");

    // Retention: once its partition is dropped, the history leaves the rollups with it.
    sqlx::raw_sql(
        "UPDATE attune.execution SET status = 'canceled', finished_at = now() WHERE id IN (908, 952);
         SELECT attune.history_rotate_at(f, interval '0', now())
           FROM unnest(ARRAY['execution', 'event', 'enforcement']) f;",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    roll_up_everything(&db.pool).await;
    let dropped: Vec<String> = lines(
        &mut conn,
        "SELECT r.partition_name FROM unnest(ARRAY['execution', 'event', 'enforcement']) f,
                attune.history_retain_at(f, interval '1 day', now() + interval '2 days') r WHERE r.dropped",
    )
    .await;
    assert_eq!(dropped, vec!["execution_p0", "event_p0", "enforcement_p0"]);
    let left: Vec<String> = lines(
        &mut conn,
        "SELECT concat_ws(' ', (SELECT count(*) FROM attune.execution_rollup), (SELECT count(*) FROM attune.execution_duration_rollup),
                          (SELECT count(*) FROM attune.execution_latency_rollup), (SELECT count(*) FROM attune.event_rollup),
                          (SELECT count(*) FROM attune.enforcement_rollup), (SELECT count(*) FROM attune.history_rollup_pending))",
    )
    .await;
    assert_eq!(left, vec!["0 0 0 0 0 0"]);
    assert!(figures(&mut conn, both).await.iter().take(6).all(|(_, rows)| rows.is_empty()));
}

#[tokio::test]
async fn each_view_returns_the_figures_of_a_seeded_data_set() {
    let db = TestDb::new().await;
    let (a, b) = seed(&db.pool).await;
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(figures(&mut conn, &format!("WHERE tenant_id = {a}")).await, expected_a());
    // The other tenant's figures are its own.
    let b_figures = figures(&mut conn, &format!("WHERE tenant_id = {b}")).await;
    let b_of = |name: &str| b_figures.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    assert_eq!(b_of("action_failure_rate"), vec!["a.echo 1 0 0 1 0 1.0000"]);
    assert_eq!(b_of("worker_utilisation"), vec!["w1 active 4 2 0.5000 1"]);
    assert_eq!(b_of("queue_depth"), vec!["running 1 1 10:30"]);
    assert!(b_of("rule_hit_rate").is_empty() && b_of("inquiry_response_times").is_empty());

    // Every view and every column of it is commented.
    let uncommented: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname || coalesce('.' || a.attname, '')
           FROM pg_class c LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          WHERE c.relnamespace = 'attune_reporting'::regnamespace AND c.relkind = 'v'
            AND (obj_description(c.oid, 'pg_class') IS NULL OR col_description(c.oid, a.attnum) IS NULL)",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(uncommented.is_empty(), "without a COMMENT ON: {uncommented:?}");
    let views: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'attune_reporting'::regnamespace AND relkind = 'v'",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(views, attune_core::db::REPORTING_VIEWS.len() as i64);
}

/// Connects to the test's database as `login`.
async fn connect_as(db: &TestDb, login: &str, password: &str) -> PgConnection {
    PgConnection::connect_with(&db.connect_options().username(login).password(password))
        .await
        .unwrap_or_else(|e| panic!("log in as {login}: {e}"))
}

/// Drops the login when the test ends, passed or not: roles are cluster-wide, and the
/// test's database goes but its login would stay.
struct DropRole {
    admin: sqlx::postgres::PgConnectOptions,
    login: String,
}

impl Drop for DropRole {
    fn drop(&mut self) {
        let (admin, login) = (self.admin.clone(), self.login.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let sql = format!("DROP OWNED BY {login}; DROP ROLE IF EXISTS {login}");
                    let _ = sqlx::raw_sql(&sql).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn a_reporting_login_reads_its_own_tenant_only_and_writes_nothing() {
    let db = TestDb::new().await;
    let (a, b) = seed(&db.pool).await;
    let login = format!("bi_{}", rand::thread_rng().gen::<u32>());
    let _drop_role = DropRole { admin: db.connect_options(), login: login.clone() };
    let mut admin = db.pool.acquire().await.unwrap();
    let password = attune_core::db::grant_reporting_login(&mut admin, "rep_a", &login).await.unwrap();
    {
        let mut bi = connect_as(&db, &login, &password).await;
        // Through the views: exactly tenant A's figures, with no filter at all.
        assert_eq!(figures(&mut bi, "").await, expected_a());
        let jit: String = sqlx::query_scalar("SELECT current_setting('jit')").fetch_one(&mut bi).await.unwrap();
        assert_eq!(jit, "off", "the login's sessions plan the views without JIT");
        // The same once the history is rolled up: the rollups are confined to the tenant too.
        ids_past_the_seed(&db.pool).await;
        roll_up_everything(&db.pool).await;
        assert_eq!(figures(&mut bi, "").await, expected_a());
        // Setting the API's tenant variable changes nothing: the tenant is the login's.
        sqlx::query(&format!("SET attune.tenant_id = '{b}'")).execute(&mut bi).await.unwrap();
        assert_eq!(figures(&mut bi, "").await, expected_a());
        let tenants: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT tenant_id FROM attune.execution").fetch_all(&mut bi).await.unwrap();
        assert_eq!(tenants, vec![a], "the base table too shows tenant A only");

        // Writes are refused: no privilege (42501), whatever the table.
        for sql in [
            "INSERT INTO attune.execution (tenant_id, action_ref, runner_type) VALUES (901, 'x.y', 'shell')",
            "UPDATE attune.execution SET status = 'canceled' WHERE id = 906",
            "DELETE FROM attune.event",
            "INSERT INTO attune.reporting_login (role_name, tenant_id) VALUES (current_user, 902)",
            "UPDATE attune.worker SET capacity = 1",
            "CREATE VIEW attune_reporting.mine AS SELECT 1",
            "SELECT * FROM attune.datastore_item",
            "DELETE FROM attune.execution_rollup",
            "UPDATE attune.history_rollup_cursor SET below = 0",
            "SELECT * FROM attune.history_rollup('execution', 1)",
        ] {
            let err = sqlx::query(sql).execute(&mut bi).await.expect_err(sql);
            let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
            assert_eq!(code.as_deref(), Some("42501"), "{sql}: {err}");
        }

        // An execution of the tenant's rule on a system trigger's event (tenant NULL): the
        // login cannot see that event, so its latency is not the login's, before or after
        // the rollup; the owner's figures count it either way.
        sqlx::raw_sql(
            "WITH ev AS (INSERT INTO attune.event (tenant_id, trigger_id, trigger_ref, created_at, processed_at)
                         VALUES (NULL, 901, 'a.hook', '2026-01-01 12:00:00Z', '2026-01-01 12:00:00Z') RETURNING id),
                  en AS (INSERT INTO attune.enforcement (tenant_id, rule_id, rule_ref, event_id, status)
                         SELECT 901, 901, 'a.sys', id, 'processed' FROM ev RETURNING id)
             INSERT INTO attune.execution (tenant_id, action_ref, runner_type, status, enforcement_id, rule_ref,
                                           created_at, started_at, finished_at)
             SELECT 901, 'a.echo', 'shell', 'succeeded', id, 'a.sys',
                    '2026-01-01 12:00:00Z', '2026-01-01 12:00:03Z', '2026-01-01 12:00:04Z' FROM en",
        )
        .execute(&mut *admin)
        .await
        .unwrap();
        let latency = "SELECT concat_ws(' ', rule_ref, executions, avg_seconds)
                         FROM attune_reporting.event_to_start_latency ORDER BY rule_ref";
        let owners = lines(&mut admin, latency).await;
        assert_eq!(lines(&mut bi, latency).await, vec!["a.match 3 2.333"]);
        roll_up_everything(&db.pool).await;
        assert_eq!(lines(&mut bi, latency).await, vec!["a.match 3 2.333"], "the same once rolled up");
        assert_eq!(lines(&mut admin, latency).await, owners);
        assert!(owners.contains(&"a.sys 1 3.000".to_string()), "{owners:?}");
        bi.close().await.ok();

        // Granting again resets the login: a new password, and it may be moved to another tenant.
        let second = attune_core::db::grant_reporting_login(&mut admin, &b.to_string(), &login).await.unwrap();
        assert_ne!(second, password);
        let old = PgConnection::connect_with(&db.connect_options().username(&login).password(&password)).await;
        assert!(old.is_err(), "the old password no longer logs in");
        let mut bi = connect_as(&db, &login, &second).await;
        let tenants: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT tenant_id FROM attune.execution").fetch_all(&mut bi).await.unwrap();
        assert_eq!(tenants, vec![b]);
        bi.close().await.ok();

        // Bad input is named; an existing role that is not a reporting login is not taken over.
        let err = attune_core::db::grant_reporting_login(&mut admin, "nobody", &login).await.unwrap_err();
        assert!(err.to_string().contains("\"nobody\""), "{err}");
        let err = attune_core::db::grant_reporting_login(&mut admin, "rep_a", "Robert'); --").await.unwrap_err();
        assert!(err.to_string().contains("not a valid role name"), "{err}");
        let err = attune_core::db::grant_reporting_login(&mut admin, "rep_a", "postgres").await.unwrap_err();
        assert!(err.to_string().contains("is not a reporting login"), "{err}");
    }
}

#[tokio::test]
async fn the_grant_command_prints_a_password_that_logs_in() {
    let db = TestDb::new().await;
    let (a, _) = seed(&db.pool).await;
    let login = format!("bi_{}", rand::thread_rng().gen::<u32>());
    let _drop_role = DropRole { admin: db.connect_options(), login: login.clone() };
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(attune_binary())
        .args(["reporting", "grant", "--tenant", "rep_a", "--login", &login])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ATTUNE_DATABASE_URL", db.url())
        .env("ATTUNE_DATA_DIR", data_dir.path())
        .output()
        .expect("attune runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    {
        assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
        let password = stdout
            .lines()
            .find_map(|l| l.strip_prefix("password:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no password in {stdout}"));
        let mut bi = connect_as(&db, &login, password).await;
        let tenants: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT tenant_id FROM attune_reporting.executions_per_hour")
                .fetch_all(&mut bi)
                .await
                .unwrap();
        assert_eq!(tenants, vec![a]);
        bi.close().await.ok();
    }
}

#[tokio::test]
async fn the_executor_rolls_finished_history_up_as_it_goes() {
    let app = attune_tests::TestApp::spawn().await;
    app.start_executor();
    let pool = app.pool();
    // Finished executions written as the services write them (ids from the sequence), and
    // one still running.
    sqlx::raw_sql(
        "INSERT INTO attune.tenant (name) VALUES ('rollup');
         INSERT INTO attune.execution (tenant_id, action_ref, runner_type, status, created_at, started_at, finished_at)
         SELECT t.id, 'roll.up', 'shell', s, now(), now(), CASE WHEN s = 'running' THEN NULL ELSE now() + interval '2 s' END
           FROM attune.tenant t, unnest(ARRAY['succeeded', 'failed', 'succeeded', 'running']) s
          WHERE t.name = 'rollup'",
    )
    .execute(pool)
    .await
    .unwrap();
    // The executor's maintenance counts the three finished ones within a few rounds, and
    // lists the running one as pending.
    let rolled = attune_tests::eventually("the executor's rollup", std::time::Duration::from_secs(60), || async {
        let row: (Option<i64>, i64) = sqlx::query_as(
            "SELECT (SELECT sum(executions)::bigint FROM attune.execution_rollup WHERE action_ref = 'roll.up'),
                    (SELECT count(*) FROM attune.history_rollup_pending p JOIN attune.execution e ON e.id = p.id
                      WHERE e.action_ref = 'roll.up')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        (row == (Some(3), 1)).then_some(row)
    })
    .await;
    assert_eq!(rolled, (Some(3), 1));
    let mut conn = pool.acquire().await.unwrap();
    let rates = lines(
        &mut conn,
        "SELECT concat_ws(' ', finished, succeeded, failed, failure_rate) FROM attune_reporting.action_failure_rate
          WHERE action_ref = 'roll.up'",
    )
    .await;
    assert_eq!(rates, vec!["3 2 1 0.3333"]);
}
