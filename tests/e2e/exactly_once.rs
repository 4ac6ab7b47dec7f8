//! Exactly-once hand-offs: a crash between claim and commit loses nothing and duplicates
//! nothing; several rule engines and workers share the work without taking an item twice.

use std::time::Duration;

use attune_tests::{eventually, TestApp, User};
use serde_json::json;
use sqlx::Connection;

/// A webhook trigger `p.hook` with a rule running core.noop; returns (trigger id, rule id).
async fn noop_rule(app: &TestApp, u: &User) -> (i64, i64) {
    assert_eq!(app.post(u, "/api/v1/packs", json!({"ref": "p", "version": "1"})).await.status, 201);
    let t = app.post(u, "/api/v1/triggers", json!({"ref": "p.hook", "type": "webhook"})).await;
    let r = app.post(u, "/api/v1/rules", json!({"ref": "p.r", "trigger": "p.hook", "action": "core.noop"})).await;
    assert_eq!(r.status, 201);
    (t.body["id"].as_i64().unwrap(), r.body["id"].as_i64().unwrap())
}

async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_crash_between_claim_and_commit_loses_no_event_and_duplicates_no_enforcement() {
    let app = TestApp::spawn().await;
    let u = app.register("crashy").await;
    let (trigger_id, rule_id) = noop_rule(&app, &u).await;
    sqlx::query("INSERT INTO attune.event (tenant_id, trigger_id, trigger_ref, payload) SELECT $1, $2, 'p.hook', jsonb_build_object('n', g) FROM generate_series(1, 20) g")
        .bind(u.tenant_id)
        .bind(trigger_id)
        .execute(app.pool())
        .await
        .unwrap();

    // A rule engine claims the batch, writes part of its work, and dies before committing.
    let mut victim = sqlx::PgConnection::connect_with(&app.db.connect_options()).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut victim).await.unwrap();
    sqlx::query("BEGIN").execute(&mut victim).await.unwrap();
    let claimed: Vec<(i64,)> = sqlx::query_as(
        "SELECT id FROM attune.event WHERE processed_at IS NULL ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut victim)
    .await
    .unwrap();
    assert_eq!(claimed.len(), 20);
    sqlx::query("INSERT INTO attune.enforcement (tenant_id, rule_id, rule_ref, event_id, status) VALUES ($1, $2, 'p.r', $3, 'processed')")
        .bind(u.tenant_id)
        .bind(rule_id)
        .bind(claimed[0].0)
        .execute(&mut victim)
        .await
        .unwrap();
    // While it holds them, a healthy engine skips them rather than waiting or doubling up.
    let skipped: i64 = scalar(
        app.pool(),
        "SELECT count(*) FROM (SELECT id FROM attune.event WHERE processed_at IS NULL FOR UPDATE SKIP LOCKED) s",
    )
    .await;
    assert_eq!(skipped, 0);
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(app.pool()).await.unwrap();
    drop(victim);

    app.start_executor();
    app.start_worker();
    eventually("all 20 executions to succeed", Duration::from_secs(60), || async {
        (scalar(app.pool(), "SELECT count(*) FROM attune.execution WHERE status = 'succeeded'").await == 20)
            .then_some(())
    })
    .await;
    assert_eq!(scalar(app.pool(), "SELECT count(*) FROM attune.event WHERE processed_at IS NULL").await, 0);
    assert_eq!(
        scalar(app.pool(), "SELECT count(*) FROM attune.enforcement").await,
        20,
        "the dead transaction's enforcement is gone"
    );
    assert_eq!(scalar(app.pool(), "SELECT count(*) FROM attune.execution").await, 20);
}

#[tokio::test]
async fn two_engines_and_two_workers_run_5000_events_exactly_once() {
    let app = TestApp::spawn().await;
    let u = app.register("busy").await;
    let (trigger_id, _) = noop_rule(&app, &u).await;
    sqlx::query("INSERT INTO attune.event (tenant_id, trigger_id, trigger_ref, payload) SELECT $1, $2, 'p.hook', jsonb_build_object('n', g) FROM generate_series(1, 5000) g")
        .bind(u.tenant_id)
        .bind(trigger_id)
        .execute(app.pool())
        .await
        .unwrap();
    for _ in 0..2 {
        let ctx = app.separate_context().await;
        tokio::spawn(attune_executor::run(ctx.clone(), app.shutdown.clone()));
        tokio::spawn(attune_worker::run(ctx, app.shutdown.clone()));
    }
    eventually("5000 executions to succeed", Duration::from_secs(240), || async {
        (scalar(app.pool(), "SELECT count(*) FROM attune.execution WHERE status = 'succeeded'").await == 5000)
            .then_some(())
    })
    .await;
    let p = app.pool();
    assert_eq!(scalar(p, "SELECT count(*) FROM attune.enforcement").await, 5000);
    assert_eq!(scalar(p, "SELECT count(DISTINCT (rule_id, event_id)) FROM attune.enforcement").await, 5000);
    assert_eq!(scalar(p, "SELECT count(*) FROM attune.execution").await, 5000, "one execution per enforcement");
    assert_eq!(scalar(p, "SELECT count(*) FROM attune.event WHERE processed_at IS NULL").await, 0);
    // Every run is recorded when a worker claims it: exactly one claim per execution.
    assert_eq!(scalar(p, "SELECT count(*) FROM attune.audit_log WHERE action = 'execution.started'").await, 5000);
    assert_eq!(
        scalar(p, "SELECT count(*) FROM (SELECT entity_id FROM attune.audit_log WHERE action = 'execution.started' GROUP BY entity_id HAVING count(*) > 1) d").await,
        0
    );
    assert_eq!(scalar(p, "SELECT count(*) FROM attune.execution_attempt").await, 5000);
    let workers = scalar(p, "SELECT count(DISTINCT worker_id) FROM attune.execution").await;
    eprintln!("5000 executions shared by {workers} workers");
}

/// A worker that dies mid-run: once it misses its heartbeats, its executions fail with
/// failure_reason "worker_lost" (or run again when their retry policy allows) instead of
/// staying `running` forever.
#[tokio::test]
async fn executions_of_a_worker_that_stopped_heart_beating_fail_as_worker_lost() {
    let app = TestApp::spawn().await;
    let u = app.register("orphaned").await;
    let p = app.pool();
    let worker: i64 = sqlx::query_scalar(
        "INSERT INTO attune.worker (name, host, pid, runtimes, capacity, heartbeat_at)
         VALUES ('gone/1/1', 'gone', 1, '{shell}', 4, now() - interval '1 minute') RETURNING id",
    )
    .fetch_one(p)
    .await
    .unwrap();
    let alive: i64 = sqlx::query_scalar(
        "INSERT INTO attune.worker (name, host, pid, runtimes, capacity) VALUES ('here/2/1', 'here', 2, '{shell}', 4) RETURNING id",
    )
    .fetch_one(p)
    .await
    .unwrap();
    let running = |w: i64| {
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO attune.execution (tenant_id, action_ref, runner_type, status, worker_id, started_at)
             VALUES ($1, 'core.local', 'shell', 'running', $2, now()) RETURNING id",
        )
        .bind(u.tenant_id)
        .bind(w)
        .fetch_one(p)
    };
    let orphan = running(worker).await.unwrap();
    let healthy = running(alive).await.unwrap();
    // One with attempts left is scheduled again instead.
    let retried = running(worker).await.unwrap();
    sqlx::query("UPDATE attune.execution SET max_attempts = 2 WHERE id = $1").bind(retried).execute(p).await.unwrap();

    let mut handled = attune_executor::reaper::reap(p, attune_executor::reaper::STALE_AFTER).await.unwrap();
    handled.sort();
    assert_eq!(handled, vec![orphan.to_string(), retried.to_string()]);
    let (status, attempt): (String, i32) = sqlx::query_as("SELECT status, attempt FROM attune.execution WHERE id = $1")
        .bind(retried)
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!((status.as_str(), attempt), ("scheduled", 2), "retried on another worker");
    let ex = app.get(&u, &format!("/api/v1/executions/{orphan}")).await.body;
    assert_eq!(ex["status"], "failed");
    assert_eq!(ex["result"]["failure_reason"], "worker_lost");
    assert!(ex["result"]["error"].as_str().unwrap().contains("gone/1/1"), "{ex}");
    let still: String = sqlx::query_scalar("SELECT status FROM attune.execution WHERE id = $1")
        .bind(healthy)
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!(still, "running", "a heart-beating worker's execution is left alone");
    let status: String =
        sqlx::query_scalar("SELECT status FROM attune.worker WHERE id = $1").bind(worker).fetch_one(p).await.unwrap();
    assert_eq!(status, "lost");
    assert!(
        attune_executor::reaper::reap(p, attune_executor::reaper::STALE_AFTER).await.unwrap().is_empty(),
        "idempotent"
    );
    let audit = app.get(&u, &format!("/api/v1/audit?entity_type=execution&entity_id={orphan}")).await;
    assert_eq!(audit.body["data"][0]["action"], "execution.failed");
}
