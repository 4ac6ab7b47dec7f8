//! Partitioned history and retention (issue 15, item 2; docs/operations.md "History and
//! retention"): the maintenance task cuts each history table into time-ordered partitions
//! and drops whole partitions out of their window — never one holding work in flight — while
//! the pipeline runs on across the cuts and drops. Time is moved forward by passing the
//! maintenance a later "now", as the executor passes the clock's.

use std::time::Duration;

use attune_core::history;
use attune_tests::{eventually, TestApp, User};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
const DAY: i64 = 24 * 3600;

/// One maintenance pass at `at` for every table, with the app's configured retention (30
/// days for executions, events and enforcements: partitions of 15 days).
async fn maintain(app: &TestApp, at: DateTime<Utc>) -> Vec<history::Outcome> {
    app.maintain_history(&[], at).await
}

fn later(seconds: i64) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(seconds)
}

/// `(partition, dropped, reason)` of each outcome, for one assertion.
fn summary(outcomes: &[history::Outcome]) -> Vec<(String, bool, Option<String>)> {
    outcomes.iter().map(|o| (o.partition.clone(), o.dropped, o.reason.clone())).collect()
}

async fn webhook_to_noop(app: &TestApp, u: &User) -> String {
    assert_eq!(app.post(u, "/api/v1/packs", json!({"ref": "h", "version": "1.0.0"})).await.status, 201);
    let t = app.post(u, "/api/v1/triggers", json!({"ref": "h.hook", "type": "webhook"})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let r = app.post(u, "/api/v1/rules", json!({"ref": "h.run", "trigger": "h.hook", "action": "core.noop"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    t.body["webhook_url"].as_str().unwrap().to_string()
}

/// Fires the webhook and waits for its execution to succeed; returns (event, execution).
async fn fire_and_finish(app: &TestApp, u: &User, hook: &str) -> (i64, i64) {
    let (event, _, execution) = fire_and_run(app, u, hook, "core.noop").await;
    (event, execution)
}

/// Fires the webhook and waits for its execution of `action` to succeed; returns (event,
/// enforcement, execution).
async fn fire_and_run(app: &TestApp, u: &User, hook: &str, action: &str) -> (i64, i64, i64) {
    let event = app.fire(hook, json!({})).await;
    eventually(&format!("event {event}'s execution to succeed"), WAIT, || async {
        let list = app.get(u, &format!("/api/v1/executions?action={action}&status=succeeded")).await;
        let data = list.body["data"].as_array().cloned().unwrap_or_default();
        let enforcements = app.get(u, &format!("/api/v1/enforcements?event={event}")).await;
        let enforcement = enforcements.body["data"].get(0).map(|e| e["id"].clone())?;
        let execution = data.iter().find(|x| x["enforcement_id"] == enforcement).and_then(|x| x["id"].as_i64())?;
        Some((event, enforcement.as_i64()?, execution))
    })
    .await
}

async fn status(app: &TestApp, u: &User, id: i64) -> Value {
    app.get(u, &format!("/api/v1/executions/{id}")).await.body["status"].clone()
}

async fn count(app: &TestApp, sql: &str, id: i64) -> i64 {
    sqlx::query_scalar(sql).bind(id).fetch_one(app.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn exists(app: &TestApp, table: &str) -> bool {
    sqlx::query_scalar::<_, Option<String>>("SELECT to_regclass($1)::text")
        .bind(format!("attune.{table}"))
        .fetch_one(app.pool())
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn retention_drops_whole_partitions_out_of_window_and_never_work_in_flight() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("historian").await;
    let hook = webhook_to_noop(&app, &u).await;

    // Partition 0: a finished webhook run, and an approval still waiting (paused).
    let (old_event, old_run) = fire_and_finish(&app, &u, &hook).await;
    let ask = app.post(&u, "/api/v1/executions", json!({"action": "core.ask", "parameters": {"prompt": "ok?"}})).await;
    assert_eq!(ask.status, 201, "{:?}", ask.body);
    let ask = ask.body["id"].as_i64().unwrap();
    eventually("the approval to wait", WAIT, || async { (status(&app, &u, ask).await == "paused").then_some(()) })
        .await;
    assert_eq!(count(&app, "SELECT count(*) FROM attune.inquiry WHERE execution_id = $1", ask).await, 1);

    // Sixteen days on: every table is cut (a partition lasts half its retention: 15 days,
    // the change log's 12 hours); nothing is out of its window yet.
    assert_eq!(summary(&maintain(&app, later(16 * DAY)).await), vec![]);
    let (new_event, new_run) = fire_and_finish(&app, &u, &hook).await;
    let span = 1_000_000_000;
    assert!(new_event >= span && new_run >= span, "written to partition 1: event {new_event}, execution {new_run}");

    // Fifty days on, partition 0 (closed at day 16) of the tables kept 30 days (the change
    // log: 24 h) is out of its window. Events, enforcements and the change log go; executions stay, as
    // partition 0 holds the paused approval; the audit log is kept a year.
    let outcomes = summary(&maintain(&app, later(50 * DAY)).await);
    assert_eq!(
        outcomes,
        vec![
            ("execution_p0".into(), false, Some(format!("holds an unfinished execution (id {ask})"))),
            ("enforcement_p0".into(), true, None),
            ("event_p0".into(), true, None),
            ("change_log_p0".into(), true, None),
        ]
    );
    assert_eq!(app.get(&u, &format!("/api/v1/events/{old_event}")).await.status, 404, "the old event is gone");
    assert_eq!(status(&app, &u, old_run).await, "succeeded", "the old execution is kept with the approval");
    assert_eq!(status(&app, &u, ask).await, "paused");

    // Answered, the approval ends; the next pass drops the executions' partition 0 with
    // its output, attempts and inquiries, and nothing newer.
    let inquiry = sqlx::query_scalar::<_, i64>("SELECT id FROM attune.inquiry WHERE execution_id = $1")
        .bind(ask)
        .fetch_one(app.pool())
        .await
        .unwrap();
    let answered = app.post(&u, &format!("/api/v1/inquiries/{inquiry}/respond"), json!({"response": {}})).await;
    assert_eq!(answered.status, 200, "{:?}", answered.body);
    eventually("the approval to end", WAIT, || async { (status(&app, &u, ask).await == "succeeded").then_some(()) })
        .await;
    let outcomes = summary(&maintain(&app, later(50 * DAY)).await);
    assert_eq!(outcomes, vec![("execution_p0".into(), true, None)]);
    for table in ["execution_p0", "execution_output_p0", "execution_attempt_p0"] {
        assert!(!exists(&app, table).await, "{table} is dropped");
    }
    assert_eq!(app.get(&u, &format!("/api/v1/executions/{old_run}")).await.status, 404);
    assert_eq!(count(&app, "SELECT count(*) FROM attune.inquiry WHERE execution_id = $1", ask).await, 0);
    assert_eq!(status(&app, &u, new_run).await, "succeeded", "partition 1 is in its window");
    assert_eq!(app.get(&u, &format!("/api/v1/events/{new_event}")).await.status, 200);
    let attempts = "SELECT count(*) FROM attune.execution_attempt WHERE execution_id = $1";
    assert_eq!(count(&app, attempts, new_run).await, 1, "partition 1's attempts are kept");

    // The pipeline runs on, into the partition the second cut opened.
    let (_, newest) = fire_and_finish(&app, &u, &hook).await;
    assert!(newest >= 2 * span, "execution {newest} is in partition 2");
}

#[tokio::test]
async fn an_unprocessed_event_keeps_its_partition() {
    let app = TestApp::spawn().await;
    let u = app.register("backlog").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "b", "version": "1.0.0"})).await.status, 201);
    let t = app.post(&u, "/api/v1/triggers", json!({"ref": "b.hook", "type": "webhook"})).await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    // No executor runs here: the event stays unprocessed, as in a rule-engine backlog.
    let event = app.fire(t.body["webhook_url"].as_str().unwrap(), json!({})).await;

    maintain(&app, later(16 * DAY)).await;
    let outcomes = summary(&maintain(&app, later(50 * DAY)).await);
    let held = format!("holds an unprocessed event or the event of an unfinished execution (id {event})");
    assert!(outcomes.contains(&("event_p0".into(), false, Some(held))), "{outcomes:?}");
    assert_eq!(app.get(&u, &format!("/api/v1/events/{event}")).await.status, 200);
}

#[tokio::test]
async fn the_service_role_runs_the_maintenance_and_no_request_or_reporting_role_can() {
    let app = TestApp::spawn().await;
    let mut conn = app.pool().acquire().await.unwrap();
    // The roles as the private cluster makes them (docs/operations.md "Least privilege").
    sqlx::raw_sql(
        "DO $$ BEGIN
             IF to_regrole('attune_service') IS NULL THEN CREATE ROLE attune_service LOGIN NOINHERIT BYPASSRLS; END IF;
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    attune_core::db::grant_service_role(&mut conn).await.unwrap();

    // The services own nothing; the cut and retention (DDL) run through the owner's
    // functions, on the server's clock.
    sqlx::query("SET ROLE attune_service").execute(&mut *conn).await.unwrap();
    let hour = Duration::from_secs(3600);
    let open = history::rotate(&mut conn, history::Family::AuditLog, hour, None).await.expect("the service role cuts");
    assert_eq!(open, 0, "partition 0 was opened just now");
    let kept = history::retain(&mut conn, history::Family::AuditLog, Duration::from_secs(30 * DAY as u64), None)
        .await
        .expect("the service role runs retention");
    assert_eq!(kept, vec![], "nothing was closed 30 days ago");
    // But not under a table's floor, nor at a time of its choosing, nor by hand.
    let short = history::retain(&mut conn, history::Family::AuditLog, hour, None).await.expect_err("refused");
    assert!(short.to_string().contains("retention of audit_log must be at least 30 days"), "{short}");
    let sqlstate = |e: sqlx::Error| e.as_database_error().and_then(|e| e.code()).map(|c| c.to_string());
    let moved = history::retain(&mut conn, history::Family::Execution, hour, Some(later(100 * DAY))).await;
    assert_eq!(moved.map_err(sqlstate).unwrap_err().as_deref(), Some("42501"), "no time travel for the service");
    // The reporting rollup likewise: through its function, never by hand.
    sqlx::query("SELECT * FROM attune.history_rollup('execution', 100)")
        .execute(&mut *conn)
        .await
        .expect("the service role rolls up");
    for sql in [
        "UPDATE attune.history_partition SET closed_at = now() - interval '1 year'",
        "DELETE FROM attune.audit_log_p0",
        "SELECT count(*) FROM attune.execution_p0",
        "DELETE FROM attune.execution_rollup",
        "UPDATE attune.history_rollup_cursor SET below = 0",
        "SELECT * FROM attune.history_rollup_range('execution', 0, 1000)",
    ] {
        let refused = sqlx::query(sql).execute(&mut *conn).await.expect_err(sql);
        assert_eq!(sqlstate(refused).as_deref(), Some("42501"), "{sql}");
    }

    // A request's role and a reporting login cannot call them at all.
    for role in ["attune_api", "attune_reporting"] {
        sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
        sqlx::query(&format!("SET ROLE {role}")).execute(&mut *conn).await.unwrap();
        let refused =
            history::retain(&mut conn, history::Family::Execution, Duration::from_secs(30 * DAY as u64), None)
                .await
                .expect_err("refused");
        assert_eq!(sqlstate(refused).as_deref(), Some("42501"), "{role}");
        let refused = sqlx::query("SELECT * FROM attune.history_rollup('execution', 100)")
            .execute(&mut *conn)
            .await
            .expect_err("refused");
        assert_eq!(sqlstate(refused).as_deref(), Some("42501"), "{role}");
    }
    sqlx::query("RESET ROLE").execute(&mut *conn).await.unwrap();
}

/// History names its tenant and definitions by id (migrations/20261201000002): deleting a
/// trigger, rule and action through the API (a tenant's role, under row-level security)
/// keeps their history, with the id cleared as the foreign keys' `ON DELETE SET NULL` did.
#[tokio::test]
async fn deleted_definitions_leave_their_history_with_the_id_cleared() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("links").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "h", "version": "1.0.0"})).await.status, 201);
    let t = app.post(&u, "/api/v1/triggers", json!({"ref": "h.hook", "type": "webhook"})).await;
    let a =
        app.post(&u, "/api/v1/actions", json!({"ref": "h.say", "runner_type": "shell", "command": "echo hi"})).await;
    let r = app.post(&u, "/api/v1/rules", json!({"ref": "h.run", "trigger": "h.hook", "action": "h.say"})).await;
    assert_eq!((t.status, a.status, r.status), (201, 201, 201), "{:?} {:?} {:?}", t.body, a.body, r.body);
    let hook = t.body["webhook_url"].as_str().unwrap();
    let (event, enforcement, execution) = fire_and_run(&app, &u, hook, "h.say").await;
    let links = || async {
        sqlx::query_as::<_, (Option<i64>, Option<i64>, Option<i64>, Option<i64>, String, Option<String>)>(
            "SELECT ev.trigger_id, en.rule_id, x.rule_id, x.action_id, x.action_ref, x.rule_ref
               FROM attune.event ev, attune.enforcement en, attune.execution x
              WHERE ev.id = $1 AND en.id = $2 AND x.id = $3",
        )
        .bind(event)
        .bind(enforcement)
        .bind(execution)
        .fetch_one(app.pool())
        .await
        .unwrap()
    };
    let ids = |body: &Value| body["id"].as_i64();
    let before = links().await;
    assert_eq!(
        (before.0, before.1, before.2, before.3),
        (ids(&t.body), ids(&r.body), ids(&r.body), ids(&a.body)),
        "{before:?}"
    );

    for (kind, body) in [("rules", &r.body), ("actions", &a.body), ("triggers", &t.body)] {
        let deleted = app.delete(&u, &format!("/api/v1/{kind}/{}", ids(body).unwrap())).await;
        assert_eq!(deleted.status, 204, "DELETE {kind}: {:?}", deleted.body);
    }
    let after = links().await;
    assert_eq!(after, (None, None, None, None, "h.say".into(), Some("h.run".into())));
    let shown = app.get(&u, &format!("/api/v1/executions/{execution}")).await;
    assert_eq!((shown.status, shown.body["action_ref"].as_str()), (200, Some("h.say")), "{:?}", shown.body);
}

/// A deleted tenant's events, enforcements and executions go with it, as the foreign keys'
/// `ON DELETE CASCADE` did; another tenant's stay.
#[tokio::test]
async fn a_deleted_tenant_takes_its_history_with_it() {
    let app = TestApp::spawn_pipeline().await;
    let (gone, kept) = (app.register("gone").await, app.register("kept").await);
    for u in [&gone, &kept] {
        let hook = webhook_to_noop(&app, u).await;
        fire_and_finish(&app, u, &hook).await;
    }
    let app = &app;
    let history = |tenant: i64| async move {
        let mut counts = Vec::new();
        for table in ["event", "enforcement", "execution"] {
            let sql = format!("SELECT count(*) FROM attune.{table} WHERE tenant_id = $1");
            counts.push(count(app, &sql, tenant).await);
        }
        counts
    };
    assert_eq!((history(gone.tenant_id).await, history(kept.tenant_id).await), (vec![1, 1, 1], vec![1, 1, 1]));
    sqlx::query("DELETE FROM attune.tenant WHERE id = $1").bind(gone.tenant_id).execute(app.pool()).await.unwrap();
    assert_eq!((history(gone.tenant_id).await, history(kept.tenant_id).await), (vec![0, 0, 0], vec![1, 1, 1]));
}

/// Every partition of the history tables — the first ones and those cut later — is
/// analyzed only once as many of its rows changed as it holds (migration
/// `20261201000005_history_analyze_less_often`: each ANALYZE makes every pooled connection
/// plan its statements again), and a new partition keeps its table's other storage settings.
#[tokio::test]
async fn every_partition_is_analyzed_less_often_and_new_ones_keep_their_tables_settings() {
    let app = TestApp::spawn().await;
    let partitions = || async {
        sqlx::query_as::<_, (String, Vec<String>)>(
            "SELECT c.relname::text, COALESCE(c.reloptions, '{}')
               FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid JOIN pg_class p ON p.oid = h.inhparent
              WHERE p.relnamespace = 'attune'::regnamespace AND p.relkind = 'p' AND c.relkind = 'r'
              ORDER BY 1",
        )
        .fetch_all(app.pool())
        .await
        .unwrap()
    };
    let before = partitions().await;
    // Sixteen days on, every table is cut: a new partition of each, made by the maintenance.
    maintain(&app, later(16 * DAY)).await;
    let after = partitions().await;
    let new: Vec<&(String, Vec<String>)> = after.iter().filter(|p| !before.contains(p)).collect();
    assert!(new.iter().any(|(name, _)| name.starts_with("execution_p")), "a new partition of executions: {new:?}");
    assert!(new.iter().any(|(name, _)| name.starts_with("change_log_p")), "a new partition of the change log: {new:?}");
    for (name, options) in &after {
        assert!(options.contains(&"autovacuum_analyze_scale_factor=1.0".to_string()), "{name}: {options:?}");
        if name.starts_with("execution_p") {
            // The work table's own settings (migration 5), copied to each partition.
            assert!(options.contains(&"fillfactor=80".to_string()), "{name}: {options:?}");
            assert!(options.contains(&"autovacuum_vacuum_threshold=2000".to_string()), "{name}: {options:?}");
        }
    }
}
