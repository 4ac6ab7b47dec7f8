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

use std::time::{Duration, Instant};

use attune_core::domain::TriggerType;
use attune_core::wakeup::Channel;
use attune_core::{Context, Shutdown};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::schedule::Schedule;

/// Due ticks fired per statement.
const BATCH: i64 = 500;
/// Reconcile at least this often even without a notification (the safety net).
const RESYNC: Duration = Duration::from_secs(30);

/// One row of `timer_triggers.sql`.
struct TimerTrigger {
    id: i64,
    kind: TriggerType,
    parameters: Value,
    schedule_hash: String,
    active: bool,
    has_state: bool,
    next_fire_at: Option<DateTime<Utc>>,
    done: Option<bool>,
    state_hash: Option<String>,
    now: DateTime<Utc>,
}

/// One row of `claim_due.sql`.
struct Due {
    trigger_id: i64,
    next_fire_at: DateTime<Utc>,
    seq: i64,
    kind: TriggerType,
    parameters: Value,
    tenant_id: Option<i64>,
    trigger_ref: String,
    now: DateTime<Utc>,
}

/// The binds of `fire.sql`: one array per column, built in one pass over the due ticks.
#[derive(Default)]
struct FireColumns {
    // Every claimed timer, advanced ($1..$4).
    trigger_ids: Vec<i64>,
    seqs: Vec<i64>,
    next_fire_ats: Vec<Option<DateTime<Utc>>>,
    dones: Vec<bool>,
    // One event per tick that fires ($5..$8).
    event_tenant_ids: Vec<Option<i64>>,
    event_trigger_ids: Vec<i64>,
    event_trigger_refs: Vec<String>,
    payloads: Vec<Value>,
}

impl FireColumns {
    fn of(due: &[Due], now: DateTime<Utc>) -> FireColumns {
        let mut c = FireColumns::default();
        for d in due {
            let schedule = match Schedule::parse(d.kind, &d.parameters) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(trigger = %d.trigger_ref, error = %e, "timer cannot be scheduled; stopping it");
                    c.trigger_ids.push(d.trigger_id);
                    c.seqs.push(d.seq);
                    c.next_fire_ats.push(None);
                    c.dones.push(false);
                    continue;
                }
            };
            let seq = d.seq + 1;
            c.trigger_ids.push(d.trigger_id);
            c.seqs.push(seq);
            c.next_fire_ats.push(schedule.next(d.next_fire_at, now));
            c.dones.push(matches!(schedule, Schedule::Date(_)));
            c.event_tenant_ids.push(d.tenant_id);
            c.event_trigger_ids.push(d.trigger_id);
            c.event_trigger_refs.push(d.trigger_ref.clone());
            c.payloads.push(json!({
                "scheduled_at": d.next_fire_at,
                "fired_at": now,
                "seq": seq,
                "trigger": d.trigger_ref,
            }));
        }
        c
    }
}

/// Fires due ticks until `shutdown`. The drain: no new claim after it, and the round in
/// progress runs to its commit.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = ctx.pool.clone();
    let definitions = ctx.notifier.subscribe(&[Channel::Timer, Channel::Rule]).await?;
    let events = ctx.notifier.hint(Channel::Event);
    let mut resync = true;
    let mut last_sync = Instant::now();
    while !shutdown.is_cancelled() {
        if resync || last_sync.elapsed() > RESYNC {
            if let Err(e) = reconcile(&pool).await {
                tracing::error!(error = %e, "timer reconciliation failed");
            }
            resync = false;
            last_sync = Instant::now();
        }
        match fire_due(&pool).await {
            Ok(n) if n as i64 == BATCH => continue,
            Ok(n) if n > 0 => events.poke(),
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "firing timers failed; the ticks stay due");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        // Seconds to the next tick by the database's clock, which every service shares.
        let seconds: Option<f64> =
            sqlx::query_file_scalar!("../../sql/sensor/next_wait.sql").fetch_one(&pool).await.unwrap_or(None);
        let wait = seconds
            .map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(RESYNC))
            .unwrap_or(RESYNC)
            .clamp(Duration::from_millis(1), RESYNC);
        // Only this wait is cut short by shutdown, never a round: the ticks claimed always
        // commit (fired once) or roll back (still due) before the loop ends.
        tokio::select! {
            _ = definitions.notified() => resync = true,
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    tracing::debug!("timers stopped");
    Ok(())
}

/// Brings `timer_state` in line with the timer triggers and their rules. One service at a
/// time does it (advisory lock); the others skip.
pub async fn reconcile(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let locked = sqlx::query_scalar!(r#"SELECT pg_try_advisory_xact_lock(hashtext('attune.timer_sync')) AS "locked!""#)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(());
    }
    let timers = sqlx::query_file_as!(TimerTrigger, "../../sql/sensor/timer_triggers.sql").fetch_all(&mut *tx).await?;
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
            match Schedule::parse(t.kind, &t.parameters) {
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
        sqlx::query!(
            "INSERT INTO attune.timer_state (trigger_id, next_fire_at, done, schedule_hash)
             SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::bool[], $4::text[])
             ON CONFLICT (trigger_id) DO UPDATE
                SET next_fire_at = EXCLUDED.next_fire_at, done = EXCLUDED.done,
                    schedule_hash = EXCLUDED.schedule_hash, updated_at = clock_timestamp()",
            &ids,
            &nexts as &[Option<DateTime<Utc>>],
            &dones,
            &hashes,
        )
        .execute(&mut *tx)
        .await?;
        tracing::debug!(changed = ids.len(), "timers reconciled");
    }
    tx.commit().await
}

/// Fires every due tick (up to a batch); returns how many fired.
async fn fire_due(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    let due = sqlx::query_file_as!(Due, "../../sql/sensor/claim_due.sql", BATCH).fetch_all(&mut *tx).await?;
    if due.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let c = FireColumns::of(&due, due[0].now);
    sqlx::query_file!(
        "../../sql/sensor/fire.sql",
        &c.trigger_ids,
        &c.seqs,
        &c.next_fire_ats as &[Option<DateTime<Utc>>],
        &c.dones,
        &c.event_tenant_ids as &[Option<i64>],
        &c.event_trigger_ids,
        &c.event_trigger_refs,
        &c.payloads,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    attune_core::metrics::events_created("timer", c.payloads.len() as u64);
    tracing::debug!(
        rows = due.len(),
        fired = c.payloads.len(),
        ms = started.elapsed().as_millis() as u64,
        "timer claim round"
    );
    Ok(due.len())
}
