//! Timers (T1.1, T1.2, T1.3, T3.1, T3.2, T3.3, T3.24): interval, cron and date triggers
//! fire on schedule, exactly once per tick however many sensor services run.

use std::time::Duration;

use attune_tests::{eventually, TestApp, User};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Pack `tm` with timer trigger `tm.<name>` and an enabled rule `tm.<name>_rule` to core.noop.
async fn timer(app: &TestApp, u: &User, name: &str, kind: &str, parameters: Value) -> (i64, i64) {
    let _ = app.post(u, "/api/v1/packs", json!({"ref": "tm", "version": "1"})).await;
    let t = app
        .post(u, "/api/v1/triggers", json!({"ref": format!("tm.{name}"), "type": kind, "parameters": parameters}))
        .await;
    assert_eq!(t.status, 201, "{:?}", t.body);
    let r = app
        .post(
            u,
            "/api/v1/rules",
            json!({"ref": format!("tm.{name}_rule"), "trigger": format!("tm.{name}"), "action": "core.noop"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (t.body["id"].as_i64().unwrap(), r.body["id"].as_i64().unwrap())
}

/// The trigger's events' payloads, in order.
async fn ticks(app: &TestApp, trigger_id: i64) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM attune.event WHERE trigger_id = $1 ORDER BY id")
        .bind(trigger_id)
        .fetch_all(app.pool())
        .await
        .unwrap()
}

async fn wait_ticks(app: &TestApp, trigger_id: i64, n: usize, within: Duration) -> Vec<Value> {
    eventually(&format!("{n} ticks of trigger {trigger_id}"), within, || async {
        let t = ticks(app, trigger_id).await;
        (t.len() >= n).then_some(t)
    })
    .await
}

fn time(v: &Value, field: &str) -> DateTime<Utc> {
    v[field]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

fn lateness_ms(tick: &Value) -> i64 {
    (time(tick, "fired_at") - time(tick, "scheduled_at")).num_milliseconds()
}

#[tokio::test]
async fn t1_1_interval_timer_runs_its_action_on_schedule() {
    let app = TestApp::spawn_pipeline().await;
    app.start_sensor();
    let u = app.register("ticker").await;
    let (trigger, _) = timer(&app, &u, "every_second", "timer.interval", json!({"interval_seconds": 1})).await;
    let t = wait_ticks(&app, trigger, 3, Duration::from_secs(15)).await;
    let seqs: Vec<i64> = t.iter().take(3).map(|p| p["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    for w in t.windows(2).take(2) {
        assert_eq!(
            (time(&w[1], "scheduled_at") - time(&w[0], "scheduled_at")).num_milliseconds(),
            1000,
            "no drift: {w:?}"
        );
    }
    for tick in t.iter().take(3) {
        assert!((0..500).contains(&lateness_ms(tick)), "fired within 500 ms of its schedule: {tick}");
    }
    let done = eventually("3 executions", Duration::from_secs(15), || async {
        let e = app.get(&u, "/api/v1/executions?rule=tm.every_second_rule&status=succeeded").await;
        (e.body["total"].as_i64().unwrap() >= 3).then_some(e.body)
    })
    .await;
    assert_eq!(done["data"][0]["action_ref"], "core.noop");
}

#[tokio::test]
async fn t1_2_date_timer_fires_exactly_once() {
    let app = TestApp::spawn_pipeline().await;
    app.start_sensor();
    let u = app.register("oneshot").await;
    let at = Utc::now() + chrono::Duration::seconds(2);
    let (trigger, _) = timer(&app, &u, "once", "timer.date", json!({"date": at.to_rfc3339()})).await;
    let t = wait_ticks(&app, trigger, 1, Duration::from_secs(10)).await;
    assert_eq!(time(&t[0], "scheduled_at"), chrono::SubsecRound::trunc_subsecs(at, 6));
    assert!((0..1000).contains(&lateness_ms(&t[0])), "{:?}", t[0]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(ticks(&app, trigger).await.len(), 1, "no second fire");
    let done: bool = sqlx::query_scalar("SELECT done FROM attune.timer_state WHERE trigger_id = $1")
        .bind(trigger)
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert!(done, "the timer is marked done");
    // Changing anything but its schedule does not arm it again.
    assert_eq!(
        app.patch(&u, &format!("/api/v1/triggers/{trigger}"), json!({"description": "renamed"})).await.status,
        200
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ticks(&app, trigger).await.len(), 1, "a description change does not re-fire a done date timer");
}

#[tokio::test]
async fn t1_3_cron_timer_fires_on_its_seconds() {
    let app = TestApp::spawn_pipeline().await;
    app.start_sensor();
    let u = app.register("crontab").await;
    let (trigger, _) =
        timer(&app, &u, "even", "timer.cron", json!({"cron": "*/2 * * * * *", "timezone": "Europe/Paris"})).await;
    let t = wait_ticks(&app, trigger, 3, Duration::from_secs(15)).await;
    for tick in &t {
        let at = time(tick, "scheduled_at");
        assert_eq!(at.timestamp() % 2, 0, "on an even second: {tick}");
        assert_eq!(at.timestamp_subsec_millis(), 0);
        assert!((0..500).contains(&lateness_ms(tick)), "{tick}");
    }
    let bad = app
        .post(
            &u,
            "/api/v1/triggers",
            json!({"ref": "tm.bad", "type": "timer.cron", "parameters": {"cron": "61 * * * * *"}}),
        )
        .await;
    assert_eq!(bad.status, 422);
}

#[tokio::test]
async fn t3_1_a_date_in_the_past_fires_once_at_once() {
    let app = TestApp::spawn_pipeline().await;
    app.start_sensor();
    let u = app.register("late").await;
    let past = Utc::now() - chrono::Duration::hours(1);
    let (trigger, _) = timer(&app, &u, "past", "timer.date", json!({"date": past.to_rfc3339()})).await;
    let t = wait_ticks(&app, trigger, 1, Duration::from_secs(5)).await;
    assert_eq!(t[0]["seq"], 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ticks(&app, trigger).await.len(), 1);
}

#[tokio::test]
async fn t3_2_disabling_the_last_rule_stops_the_timer_and_enabling_resumes_without_a_burst() {
    let app = TestApp::spawn_pipeline().await;
    app.start_sensor();
    let u = app.register("pausing").await;
    let (trigger, rule) = timer(&app, &u, "half", "timer.interval", json!({"interval_seconds": 0.5})).await;
    wait_ticks(&app, trigger, 2, Duration::from_secs(10)).await;
    assert_eq!(app.patch(&u, &format!("/api/v1/rules/{rule}"), json!({"enabled": false})).await.status, 200);
    let at_disable = ticks(&app, trigger).await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = ticks(&app, trigger).await.len();
    assert!(after <= at_disable + 1, "stopped at once: {at_disable} → {after}");

    let enabled_at = Utc::now();
    assert_eq!(app.patch(&u, &format!("/api/v1/rules/{rule}"), json!({"enabled": true})).await.status, 200);
    let resumed = wait_ticks(&app, trigger, after + 2, Duration::from_secs(10)).await;
    let new: Vec<&Value> = resumed[after..].iter().collect();
    assert!(time(new[0], "scheduled_at") > enabled_at, "resumes on a fresh schedule, no catch-up burst: {:?}", new[0]);
    assert_eq!((time(new[1], "scheduled_at") - time(new[0], "scheduled_at")).num_milliseconds(), 500);
}

#[tokio::test]
async fn t3_3_several_timers_run_independently_without_drift() {
    let app = TestApp::spawn_pipeline().await;
    app.start_sensor();
    let u = app.register("many_timers").await;
    let (a, _) = timer(&app, &u, "a", "timer.interval", json!({"interval_seconds": 0.5})).await;
    let (b, _) = timer(&app, &u, "b", "timer.interval", json!({"interval_seconds": 0.7})).await;
    let (c, _) = timer(&app, &u, "c", "timer.cron", json!({"cron": "* * * * * *"})).await;
    let ta = wait_ticks(&app, a, 6, Duration::from_secs(15)).await;
    let tb = wait_ticks(&app, b, 4, Duration::from_secs(15)).await;
    let tc = wait_ticks(&app, c, 3, Duration::from_secs(15)).await;
    for (ticks, step) in [(&ta, 500), (&tb, 700), (&tc, 1000)] {
        for w in ticks.windows(2) {
            assert_eq!((time(&w[1], "scheduled_at") - time(&w[0], "scheduled_at")).num_milliseconds(), step, "{w:?}");
        }
    }
}

/// T3.24: a 1 s timer for 60 s gives 60 ± 1 executions and no backlog.
#[tokio::test]
async fn t3_24_one_second_timer_for_a_minute() {
    let app = TestApp::spawn_pipeline().await;
    app.start_sensor();
    let u = app.register("minute").await;
    let started = Utc::now();
    let (trigger, rule) = timer(&app, &u, "sec", "timer.interval", json!({"interval_seconds": 1})).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(app.patch(&u, &format!("/api/v1/rules/{rule}"), json!({"enabled": false})).await.status, 200);
    let elapsed = (Utc::now() - started).num_milliseconds() as f64 / 1000.0;
    let fired = ticks(&app, trigger).await;
    assert!((fired.len() as f64 - elapsed).abs() <= 2.0, "{} ticks in {elapsed:.1} s", fired.len());
    assert!((59..=61).contains(&fired.len()), "{} ticks", fired.len());
    // No backlog: every execution finished within 2 s of its tick.
    let slow: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM attune.execution x JOIN attune.enforcement f ON f.id = x.enforcement_id JOIN attune.event e ON e.id = f.event_id
          WHERE e.trigger_id = $1 AND (x.finished_at IS NULL OR x.finished_at - e.created_at > interval '2 seconds')",
    )
    .bind(trigger)
    .fetch_one(app.pool())
    .await
    .unwrap();
    eventually("the last executions to finish", Duration::from_secs(30), || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.execution WHERE finished_at IS NULL")
            .fetch_one(app.pool())
            .await
            .unwrap();
        (open == 0).then_some(())
    })
    .await;
    assert!(slow <= 1, "{slow} executions lagged behind their tick");
}

#[tokio::test]
async fn two_sensor_services_fire_each_tick_exactly_once() {
    let app = TestApp::spawn().await;
    app.start_sensor();
    app.start_sensor();
    let u = app.register("replicas").await;
    let (trigger, _) = timer(&app, &u, "fast", "timer.interval", json!({"interval_seconds": 0.2})).await;
    let t = wait_ticks(&app, trigger, 15, Duration::from_secs(15)).await;
    let seqs: Vec<i64> = t.iter().map(|p| p["seq"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "each tick once, none skipped");
    let mut scheduled: Vec<DateTime<Utc>> = t.iter().map(|p| time(p, "scheduled_at")).collect();
    scheduled.dedup();
    assert_eq!(scheduled.len(), t.len());
}

#[tokio::test]
async fn a_stopped_sensor_service_loses_no_tick_beyond_the_missed_tick_policy() {
    let app = TestApp::spawn().await;
    let first = app.start_sensor();
    let u = app.register("restart").await;
    let (trigger, _) = timer(&app, &u, "steady", "timer.interval", json!({"interval_seconds": 0.5})).await;
    wait_ticks(&app, trigger, 3, Duration::from_secs(10)).await;
    first.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = ticks(&app, trigger).await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ticks(&app, trigger).await.len(), before, "no sensor service, no ticks");
    app.start_sensor();
    let t = wait_ticks(&app, trigger, before + 3, Duration::from_secs(10)).await;
    let after = &t[before..];
    // One catch-up fire for the missed period, then back on the schedule's grid.
    assert!(lateness_ms(&after[0]) > 1000, "the first tick after the restart is the missed one: {:?}", after[0]);
    assert!(after[1..].iter().all(|tick| lateness_ms(tick) < 500), "then on time: {after:?}");
    let grid = time(&t[0], "scheduled_at");
    for tick in &t {
        assert_eq!((time(tick, "scheduled_at") - grid).num_milliseconds() % 500, 0, "on the original grid: {tick}");
    }
    let seqs: Vec<i64> = t.iter().map(|p| p["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=t.len() as i64).collect::<Vec<_>>());
}

/// A sensor service dying in the middle of firing (its transaction cut off after it claimed
/// the tick and wrote the event) loses no tick and fires none twice.
#[tokio::test]
async fn a_sensor_killed_mid_fire_loses_and_doubles_no_tick() {
    use sqlx::Connection;
    let app = TestApp::spawn().await;
    let first = app.start_sensor();
    let u = app.register("killed").await;
    let (trigger, _) = timer(&app, &u, "k", "timer.interval", json!({"interval_seconds": 0.5})).await;
    wait_ticks(&app, trigger, 2, Duration::from_secs(10)).await;
    first.cancel();
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut victim = sqlx::PgConnection::connect_with(&app.db.connect_options()).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut victim).await.unwrap();
    sqlx::query("BEGIN").execute(&mut victim).await.unwrap();
    let claimed: Vec<(i64,)> = sqlx::query_as(
        include_str!("../../sql/sensor/claim_due.sql")
            .replace(
                "SELECT ts.trigger_id, ts.next_fire_at, ts.seq, t.type, t.parameters, t.tenant_id, t.ref",
                "SELECT ts.trigger_id",
            )
            .as_str(),
    )
    .bind(10i64)
    .fetch_all(&mut victim)
    .await
    .unwrap();
    assert_eq!(claimed.len(), 1, "the tick is due and claimed by the doomed service");
    sqlx::query("INSERT INTO attune.event (tenant_id, trigger_id, trigger_ref, payload, source) VALUES ($1, $2, 'tm.k', '{\"doomed\": true}', 'timer')")
        .bind(u.tenant_id)
        .bind(trigger)
        .execute(&mut victim)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(app.pool()).await.unwrap();
    drop(victim);

    let before = ticks(&app, trigger).await.len();
    app.start_sensor();
    let t = wait_ticks(&app, trigger, before + 2, Duration::from_secs(10)).await;
    assert!(t.iter().all(|p| p.get("doomed").is_none()), "the dead transaction's event is gone");
    let seqs: Vec<i64> = t.iter().map(|p| p["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=t.len() as i64).collect::<Vec<_>>(), "no tick lost, none doubled");
}
