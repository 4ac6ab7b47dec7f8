//! The change log's reader ([`attune_core::change_log::Tail`]) never skips a row committed
//! out of id order, never delivers one twice, and passes over ids that will never come
//! (rolled back); the statements that change executions write their rows.

use std::time::{Duration, Instant};

use attune_core::change_log::{Tail, GAP_GRACE};
use attune_tests::{eventually, TestApp, TestDb};
use rand::Rng;
use serde_json::json;
use sqlx::PgPool;

async fn append(conn: &mut sqlx::PgConnection, n: i64) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event) VALUES (1, 'test', $1, 'test.row') RETURNING id",
    )
    .bind(n)
    .fetch_one(conn)
    .await
    .unwrap()
}

async fn drain(tail: &mut Tail, pool: &PgPool) -> Vec<i64> {
    drain_by(tail, pool, 1000).await
}

async fn drain_by(tail: &mut Tail, pool: &PgPool, limit: i64) -> Vec<i64> {
    tail.next(pool, limit).await.unwrap().into_iter().map(|c| c.id).collect()
}

#[tokio::test]
async fn the_tail_waits_for_a_row_committed_late_and_passes_a_rolled_back_one() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let mut tail = Tail::after(0);

    // A takes id 1 and stays open; B commits id 2: the tail must not move past 1.
    let mut a = pool.begin().await.unwrap();
    let first = append(&mut a, 1).await;
    let second = append(&mut pool.acquire().await.unwrap(), 2).await;
    assert!(second > first);
    for _ in 0..3 {
        assert!(drain(&mut tail, pool).await.is_empty(), "nothing past a row still in flight");
    }
    a.commit().await.unwrap();
    assert_eq!(drain(&mut tail, pool).await, vec![first, second], "both, in id order, once A committed");

    // C takes an id and rolls back; D commits the next: the gap is passed once C is gone.
    let mut c = pool.begin().await.unwrap();
    let lost = append(&mut c, 3).await;
    let fourth = append(&mut pool.acquire().await.unwrap(), 4).await;
    assert!(drain(&mut tail, pool).await.is_empty());
    c.rollback().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..500 {
        got = drain(&mut tail, pool).await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(got, vec![fourth], "id {lost} never came, {fourth} did");
}

/// Writers A then C left in flight, `after_a` and then `after_c` rows committed after each;
/// after each commit `tail` reads (at most `limit` rows, as the writers' pokes cause) and
/// delivers nothing past A's row. Returns A, C and every id written, in id order.
async fn two_writers_in_flight<'p>(
    pool: &'p PgPool,
    tail: &mut Tail,
    limit: i64,
    after_a: i64,
    after_c: i64,
) -> (sqlx::Transaction<'p, sqlx::Postgres>, sqlx::Transaction<'p, sqlx::Postgres>, Vec<i64>) {
    let mut all = Vec::new();
    let mut a = pool.begin().await.unwrap();
    all.push(append(&mut a, 0).await);
    for n in 1..=after_a {
        all.push(append(&mut pool.acquire().await.unwrap(), n).await);
        assert!(drain_by(tail, pool, limit).await.is_empty(), "nothing past a row in flight");
    }
    let mut c = pool.begin().await.unwrap();
    all.push(append(&mut c, after_a + 1).await);
    for n in after_a + 2..=after_a + 1 + after_c {
        all.push(append(&mut pool.acquire().await.unwrap(), n).await);
        assert!(drain_by(tail, pool, limit).await.is_empty(), "nothing past a row in flight");
    }
    (a, c, all)
}

/// Reads `tail` at most `limit` rows at a time until `n` rows came, each read delivering
/// some (every row is committed).
async fn drain_all(tail: &mut Tail, pool: &PgPool, limit: i64, n: usize) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let got = drain_by(tail, pool, limit).await;
        assert!(!got.is_empty(), "every row is committed: each read delivers some ({seen:?} so far)");
        seen.extend(got);
    }
    seen
}

#[tokio::test]
async fn rows_past_gaps_are_fetched_once_however_long_they_last() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let mut tail = Tail::after(0);
    let (a, c, all) = two_writers_in_flight(pool, &mut tail, 1000, 2, 3).await;
    for _ in 0..10 {
        assert!(drain(&mut tail, pool).await.is_empty());
    }
    assert_eq!(tail.fetched(), 5, "each row past the gaps fetched once, not once per read");
    c.commit().await.unwrap();
    assert!(drain(&mut tail, pool).await.is_empty(), "A is still in flight");
    assert_eq!(tail.fetched(), 6, "C's row, and only it, read when it came");
    a.commit().await.unwrap();
    assert_eq!(drain(&mut tail, pool).await, all, "every row, in id order, once A committed");
    assert_eq!(tail.fetched(), 7);
}

#[tokio::test]
async fn a_gap_wider_than_a_read_is_delivered_in_pieces_in_order() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let mut tail = Tail::after(0);
    let mut a = pool.begin().await.unwrap();
    let mut all = Vec::new();
    for n in 0..15 {
        all.push(append(&mut a, n).await);
    }
    let mut b = pool.begin().await.unwrap();
    for n in 15..20 {
        all.push(append(&mut b, n).await);
    }
    b.commit().await.unwrap();
    assert!(drain_by(&mut tail, pool, 10).await.is_empty(), "15 rows in flight before the 5 committed");
    a.commit().await.unwrap();
    let seen = drain_all(&mut tail, pool, 10, all.len()).await;
    assert_eq!(seen, all, "every row once, in id order, across reads of at most 10");
    assert!(drain(&mut tail, pool).await.is_empty());
}

#[tokio::test]
async fn reads_cut_by_the_limit_between_held_rows_deliver_everything_in_order() {
    let db = TestDb::new().await;
    let pool = &db.pool;
    let mut tail = Tail::after(0);
    // The reads hold some rows past the gaps and are cut by the limit between others.
    let (a, c, all) = two_writers_in_flight(pool, &mut tail, 3, 2, 5).await;
    c.commit().await.unwrap();
    assert!(drain_by(&mut tail, pool, 3).await.is_empty(), "A is still in flight");
    a.commit().await.unwrap();
    let seen = drain_all(&mut tail, pool, 3, all.len()).await;
    assert_eq!(seen, all, "every row once, in id order, across reads of at most 3");
    assert!(drain_by(&mut tail, pool, 3).await.is_empty());
}

/// The transaction id of `conn`'s transaction (assigning it now).
async fn xid(conn: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint").fetch_one(conn).await.unwrap()
}

#[tokio::test]
async fn a_writer_newer_than_every_commit_is_waited_for() {
    // PostgreSQL's snapshot xmax is the latest completed transaction id + 1, so a writer
    // that got its transaction id after the last commit is at or above the xmax of the
    // snapshot that shows its gap, and a later snapshot's xmin can reach that xmax while
    // it still runs. A tail that waited only for `xmin >= xmax` passed the gap and lost
    // the row (CI, streaming::a_socket_never_sees_another_tenants_changes). Here: B gets
    // its transaction id, then A (newer), A takes an id, B the next and commits; A is then
    // the newest transaction and nothing newer has completed (other tests' commits on the
    // shared cluster can hide the flaw in a round; twenty rounds leave it little room).
    let db = TestDb::new().await;
    let pool = &db.pool;
    let mut tail = Tail::after(0);
    for round in 0..20 {
        let mut b = pool.begin().await.unwrap();
        let b_xid = xid(&mut b).await;
        let mut a = pool.begin().await.unwrap();
        assert!(xid(&mut a).await > b_xid);
        let held = append(&mut a, round).await;
        let next = append(&mut b, round).await;
        b.commit().await.unwrap();
        let waited = Instant::now();
        while waited.elapsed() < GAP_GRACE * 3 {
            assert_eq!(
                drain(&mut tail, pool).await,
                Vec::<i64>::new(),
                "round {round}: nothing past {held} while A runs"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.commit().await.unwrap();
        assert_eq!(
            drain(&mut tail, pool).await,
            vec![held, next],
            "round {round}: both, in id order, once A committed"
        );
    }
}

#[tokio::test]
async fn concurrent_writers_committing_out_of_order_lose_nothing_and_repeat_nothing() {
    let db = TestDb::new().await;
    let pool = db.pool.clone();
    let mut writers = Vec::new();
    for w in 0..6 {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..60 {
                let mut tx = pool.begin().await.unwrap();
                let (rows, hold) = {
                    let mut rng = rand::thread_rng();
                    (rng.gen_range(1..4), rng.gen_range(0..8))
                };
                for _ in 0..rows {
                    append(&mut tx, w * 1000 + i).await;
                }
                // Hold the ids a while: later ids commit first.
                tokio::time::sleep(Duration::from_millis(hold)).await;
                if i % 10 == 9 {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    // Reads of at most 5 rows: many are cut by the limit, between rows held past gaps.
    let mut tail = Tail::after(0);
    let mut seen = Vec::new();
    while writers.iter().any(|w| !w.is_finished()) {
        seen.extend(drain_by(&mut tail, &pool, 5).await);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    let all: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM attune.change_log ORDER BY id").fetch_all(&pool).await.unwrap();
    let last = *all.last().unwrap();
    while seen.last() != Some(&last) {
        seen.extend(drain_by(&mut tail, &pool, 5).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(seen, all, "every committed row exactly once, in id order");
}

#[tokio::test]
async fn an_execution_writes_each_of_its_changes() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("changes").await;
    let run = app.post(&u, "/api/v1/executions", json!({"action": "core.echo", "parameters": {"message": "hi"}})).await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    let id = run.body["id"].as_i64().unwrap();
    app.finished_execution(&u, id).await;
    let rows: Vec<(String, String, i64)> = eventually("four changes", Duration::from_secs(10), || async {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT event, attune.change_json(data) ->> 'status', tenant_id FROM attune.change_log
              WHERE entity_type = 'execution' AND entity_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(app.pool())
        .await
        .unwrap();
        (rows.len() >= 4).then_some(rows)
    })
    .await;
    let steps: Vec<(&str, &str)> = rows.iter().map(|(e, s, _)| (e.as_str(), s.as_str())).collect();
    assert_eq!(
        steps,
        vec![
            ("execution.created", "requested"),
            ("execution.status_changed", "scheduled"),
            ("execution.status_changed", "running"),
            ("execution.status_changed", "succeeded"),
        ]
    );
    assert!(rows.iter().all(|(_, _, t)| *t == u.tenant_id));
    let data: serde_json::Value =
        sqlx::query_scalar("SELECT attune.change_json(data) FROM attune.change_log WHERE entity_id = $1 AND entity_type = 'execution' ORDER BY id DESC LIMIT 1")
            .bind(id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(data["execution_id"], id);
    assert_eq!(data["action_ref"], "core.echo");
    assert!(data.get("secret_params").is_none(), "sealed secrets never leave the database");
    // `execution.created` is the row as requested: the `scheduled` message but for its
    // status, its scheduling time (none yet) and its last change (its creation).
    let first: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT attune.change_json(data)::jsonb FROM attune.change_log
          WHERE entity_type = 'execution' AND entity_id = $1 ORDER BY id LIMIT 2",
    )
    .bind(id)
    .fetch_all(app.pool())
    .await
    .unwrap();
    let (created, scheduled) = (&first[0], &first[1]);
    assert!(scheduled["scheduled_at"].is_string(), "{scheduled}");
    let mut expected = scheduled.clone();
    expected["status"] = json!("requested");
    expected["scheduled_at"] = json!(null);
    expected["updated_at"] = scheduled["created_at"].clone();
    assert_eq!(created, &expected);
}

/// The change functions (`attune.<entity>_change`, made from the catalogue by
/// `attune.define_change_functions()`) give each entity's whole row but the hidden columns,
/// plus `<entity>_id`: the same JSON as the row itself. A migration that changes one of these
/// tables without making them again fails here.
#[tokio::test]
async fn change_rows_carry_every_column_but_the_hidden_ones() {
    let db = TestDb::new().await;
    // Every column of each table set from one JSON object (jsonb_populate_record ignores
    // the keys a table does not have), so a column missing from a function shows as a
    // difference, and a timestamp, text, arrays and JSON go through both ways.
    let every = r#"{"id": 7, "tenant_id": 3, "status": "running", "parameters": {"a": [1, "x", null]},
        "result": {"output": "é \"q\""}, "payload": {"n": 1.5}, "secret_params": "\\x0102",
        "created_at": "2026-12-01T10:00:00.123456+00:00", "roles": ["ops"], "users": ["ann"],
        "response": {"ok": true}, "action_ref": "p.a", "trigger_ref": "p.t", "rule_ref": "p.r"}"#;
    for (entity, hidden) in
        [("execution", Some("secret_params")), ("event", None), ("enforcement", None), ("inquiry", None)]
    {
        let (same, new, old): (bool, serde_json::Value, serde_json::Value) = sqlx::query_as(&format!(
            "SELECT attune.change_json(attune.{entity}_change(r))::jsonb = o, attune.change_json(attune.{entity}_change(r))::jsonb, o
               FROM jsonb_populate_record(NULL::attune.{entity}, $1::jsonb) r,
                    LATERAL (SELECT (to_jsonb(r) - $2::text) || jsonb_build_object('{entity}_id', r.id) AS o) x"
        ))
        .bind(every)
        .bind(hidden.unwrap_or(""))
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert!(same, "{entity}: the change function gives {new}, the row is {old}");
        assert_eq!(new[format!("{entity}_id")], json!(7), "{entity}");
        if let Some(hidden) = hidden {
            assert!(new.get(hidden).is_none(), "{entity}: {hidden} never leaves the database");
        }
    }
}

/// The log keeps values of the message types (migrations/20261201000004), so
/// `attune.define_change_functions()` alters a type when its table changes instead of
/// making it again: rows written after carry the new columns, rows written before still
/// read, with an added column null and a dropped one gone (a retyped one is dropped and
/// added again).
#[tokio::test]
async fn the_message_types_follow_a_changed_table_and_rows_written_before_still_read() {
    let db = TestDb::new().await;
    let write = |fields: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO attune.change_log (tenant_id, entity_type, entity_id, event, data)
                 SELECT 1, 'event', r.id, 'event.created', attune.event_change(r)
                   FROM jsonb_populate_record(NULL::attune.event, $1::jsonb) r",
            )
            .bind(format!(r#"{{"id": 5, "tenant_id": 1, "trigger_ref": "p.t"{fields}}}"#))
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    let change = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            sqlx::query("SELECT attune.define_change_functions()").execute(&pool).await.unwrap();
        }
    };
    write("").await;
    change("ALTER TABLE attune.event ADD COLUMN probe_a text, ADD COLUMN probe_b text").await;
    write(r#", "probe_a": "a", "probe_b": "b""#).await;
    change("ALTER TABLE attune.event DROP COLUMN probe_a, ALTER COLUMN probe_b TYPE int USING NULL").await;
    write(r#", "probe_b": 7"#).await;

    let read: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT attune.change_json(data)::jsonb FROM attune.change_log ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let picked: Vec<_> = read
        .iter()
        .map(|d| {
            (d["event_id"].clone(), d["trigger_ref"].clone(), d.get("probe_a").cloned(), d.get("probe_b").cloned())
        })
        .collect();
    let (five, t) = (json!(5), json!("p.t"));
    assert_eq!(
        picked,
        [
            (five.clone(), t.clone(), None, Some(json!(null))),
            (five.clone(), t.clone(), None, Some(json!(null))),
            (five, t, None, Some(json!(7))),
        ],
        "{read:?}"
    );
    // And the function still gives the row as it is now.
    let same: bool = sqlx::query_scalar(
        "SELECT attune.change_json(attune.event_change(r))::jsonb = to_jsonb(r) || jsonb_build_object('event_id', r.id)
           FROM jsonb_populate_record(NULL::attune.event, '{\"id\": 9, \"probe_b\": 3}'::jsonb) r",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(same);
}
