//! The timer service: turns time into events, each tick exactly once across replicas.
//!
//! `timer_state` holds each timer trigger's `next_fire_at`. A round claims the due rows
//! with `FOR UPDATE SKIP LOCKED`, and in one statement inserts their events and advances
//! them (see [`crate::schedule`] for the next tick and the missed-tick policy) — so any
//! number of sensor services can run and a tick fires once. Between rounds the service
//! sleeps until the earliest `next_fire_at` (precision is the clock's, not a poll
//! interval's), woken early when triggers or rules change.
//!
//! A timer ticks only while it is enabled and at least one enabled rule uses it:
//! reconciliation sets `next_fire_at` to NULL when the last rule is disabled, and to the
//! schedule's next tick after *now* when one is enabled again (no burst).

use std::time::Duration;

use attune_core::wakeup::{Hint, Wakeup};
use attune_core::{Context, Shutdown};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::schedule::Schedule;

/// Due ticks fired per statement.
const BATCH: i64 = 500;
/// Reconcile at least this often even without a notification (the safety net).
const RESYNC: Duration = Duration::from_secs(30);

#[derive(sqlx::FromRow)]
struct TimerTrigger {
    id: i64,
    #[sqlx(rename = "type")]
    kind: String,
    parameters: Value,
    schedule_hash: String,
    active: bool,
    has_state: bool,
    next_fire_at: Option<DateTime<Utc>>,
    done: Option<bool>,
    state_hash: Option<String>,
    now: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Due {
    trigger_id: i64,
    next_fire_at: DateTime<Utc>,
    seq: i64,
    #[sqlx(rename = "type")]
    kind: String,
    parameters: Value,
    tenant_id: Option<i64>,
    #[sqlx(rename = "ref")]
    trigger_ref: String,
    now: DateTime<Utc>,
}

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = ctx.pool.clone();
    let definitions = Wakeup::listen(&pool, &["attune_timer", "attune_rule"], shutdown.clone()).await?;
    let events = Hint::spawn(pool.clone(), "attune_event", shutdown.clone());
    let mut resync = true;
    let mut last_sync = std::time::Instant::now();
    while !shutdown.is_cancelled() {
        if resync || last_sync.elapsed() > RESYNC {
            if let Err(e) = reconcile(&pool).await {
                tracing::error!(error = %e, "timer reconciliation failed");
            }
            resync = false;
            last_sync = std::time::Instant::now();
        }
        match fire_due(&pool).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(n) if n > 0 => events.poke(),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "firing timers failed; the ticks stay due");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // Seconds to the next tick by the database's clock, which every service shares.
        let seconds: Option<f64> = sqlx::query_scalar(include_str!("../../../sql/sensor/next_wait.sql"))
            .fetch_one(&pool)
            .await
            .unwrap_or(None);
        let wait = seconds
            .map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(RESYNC))
            .unwrap_or(RESYNC)
            .clamp(Duration::from_millis(1), RESYNC);
        tokio::select! {
            _ = definitions.notified() => resync = true,
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    Ok(())
}

/// Brings `timer_state` in line with the timer triggers and their rules. One service at a
/// time does it (advisory lock); the others skip.
pub async fn reconcile(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext('attune.timer_sync'))")
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(());
    }
    let timers: Vec<TimerTrigger> =
        sqlx::query_as(include_str!("../../../sql/sensor/timer_triggers.sql")).fetch_all(&mut *tx).await?;
    let (mut ids, mut nexts, mut dones, mut hashes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for t in timers {
        // Re-armed only when the schedule itself changed (or the timer is new).
        let rearm = t.state_hash.as_deref() != Some(t.schedule_hash.as_str());
        let done = t.done.unwrap_or(false) && !rearm;
        let next = if !t.active || done {
            None
        } else if t.next_fire_at.is_some() && !rearm {
            t.next_fire_at
        } else {
            match Schedule::parse(&t.kind, &t.parameters) {
                Ok(schedule) => schedule.first(t.now),
                Err(e) => {
                    tracing::warn!(trigger = t.id, error = %e, "timer cannot be scheduled");
                    None
                }
            }
        };
        if !t.has_state || rearm || next != t.next_fire_at || done != t.done.unwrap_or(false) {
            ids.push(t.id);
            nexts.push(next);
            dones.push(done);
            hashes.push(t.schedule_hash);
        }
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO attune.timer_state (trigger_id, next_fire_at, done, schedule_hash)
             SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bool[], $4::text[])
             ON CONFLICT (trigger_id) DO UPDATE
                SET next_fire_at = EXCLUDED.next_fire_at, done = EXCLUDED.done,
                    schedule_hash = EXCLUDED.schedule_hash, updated_at = clock_timestamp()",
        )
        .bind(&ids)
        .bind(&nexts)
        .bind(&dones)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        tracing::debug!(changed = ids.len(), "timers reconciled");
    }
    tx.commit().await
}

/// Fires every due tick (up to a batch); returns how many fired.
async fn fire_due(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let due: Vec<Due> =
        sqlx::query_as(include_str!("../../../sql/sensor/claim_due.sql")).bind(BATCH).fetch_all(&mut *tx).await?;
    if due.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let now = due[0].now;
    let mut advance = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut fired = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for d in &due {
        let schedule = match Schedule::parse(&d.kind, &d.parameters) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(trigger = %d.trigger_ref, error = %e, "timer cannot be scheduled; stopping it");
                advance.0.push(d.trigger_id);
                advance.1.push(d.seq);
                advance.2.push(None);
                advance.3.push(false);
                continue;
            }
        };
        let next = schedule.next(d.next_fire_at, now);
        let seq = d.seq + 1;
        advance.0.push(d.trigger_id);
        advance.1.push(seq);
        advance.2.push(next);
        advance.3.push(matches!(schedule, Schedule::Date(_)));
        fired.0.push(d.tenant_id);
        fired.1.push(d.trigger_id);
        fired.2.push(d.trigger_ref.clone());
        fired.3.push(json!({
            "scheduled_at": d.next_fire_at,
            "fired_at": now,
            "seq": seq,
            "trigger": d.trigger_ref,
        }));
    }
    sqlx::query(include_str!("../../../sql/sensor/fire.sql"))
        .bind(&advance.0)
        .bind(&advance.1)
        .bind(&advance.2)
        .bind(&advance.3)
        .bind(&fired.0)
        .bind(&fired.1)
        .bind(&fired.2)
        .bind(&fired.3)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(due.len())
}
