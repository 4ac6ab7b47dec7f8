//! The hub: ONE change-log reader per process, fanning each change out to the sockets of
//! its tenant whose subscription matches it.
//!
//! Sockets never touch the database for live changes: thousands of them cost one tail
//! query per wake-up, and filtering (tenant, entity type, entity id) is a lookup in memory.
//! A change matched by several sockets is serialised once and shared.
//!
//! **Back-pressure.** Each socket has a bounded queue (`notifier.socket_buffer`). The
//! reader only ever `try_send`s: a socket whose queue is full is evicted (closed with
//! 4008), so one slow client never slows the reader or the other sockets; it reconnects
//! with `since` and the replay fills what it missed.
//!
//! **The seam between replay and live.** The hub's cursor is the id up to which every
//! change has been fanned out; it moves under the same lock as the fan-out. A socket
//! registers (getting cursor `C`) before it replays: the live queue then carries exactly
//! the changes after `C`, and the replay reads `(since, C]` from the table — no gap, no
//! duplicate.
//!
//! **Parked while nobody listens.** With no socket registered for [`PARK_AFTER`], the
//! reader stops reading (a process serving no dashboard spends no query per change on
//! the stream). The next registration wakes it: it finds the log's end again as at its
//! start ([`Tail::at_end`]: the transactions running then have ended, ≥ 100 ms) and the
//! socket is served from there — its `since` replay reads what came before from the table.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use attune_core::change_log::{Change, Tail};
use attune_core::domain::ExecutionStatus;
use attune_core::wakeup::Channel;
use attune_core::{Context, Shutdown};
use axum::extract::ws::Utf8Bytes;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{self, Caller};
use crate::protocol::{close, Subscription};

/// Changes fetched per tail query (a call may also deliver up to as many held past a gap);
/// a full batch is followed at once by the next.
const BATCH: i64 = 1000;
/// The fallback when no wake-up comes (NOTIFY is only a hint).
const POLL: Duration = Duration::from_millis(200);
/// While the tail waits out a gap (a writer still in flight, or one that rolled back and
/// will send no wake-up), it asks again after this, doubling up to [`POLL`].
const GAP_RETRY: Duration = Duration::from_millis(5);
/// After a failed read (or start), the reader tries again after this.
const RETRY: Duration = Duration::from_secs(1);
/// How long a subscription waits for the reader to start before the socket is told to
/// come back later.
const READY_WAIT: Duration = Duration::from_secs(30);
/// With no socket registered this long, the reader parks (see the module's doc).
pub const PARK_AFTER: Duration = Duration::from_secs(10);
/// At shutdown, how long the sockets get to send their close frames (1001) before the
/// reader returns anyway.
const DRAIN: Duration = Duration::from_secs(5);

/// The process's fan-out. Cheap to clone; [`Hub::run`] is its reader, [`Hub::router`]
/// (see the crate root) serves its sockets.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Context,
    socket_buffer: usize,
    state: Mutex<State>,
    /// True once the reader has its starting point (registrations wait for it).
    ready: watch::Sender<bool>,
    /// True while the reader follows the log (false before it starts and while parked):
    /// only then may a socket register, taking the cursor as its seam. Changed and read
    /// for a registration under the state's lock; registrations wait on it.
    following: watch::Sender<bool>,
    /// Poked by a registration that found the reader parked.
    wanted: Notify,
    /// See [`PARK_AFTER`].
    park_after: Duration,
    /// Cancelled when the reader stops: every socket closes (1001).
    closing: CancellationToken,
    /// Every open connection (registered or not), so the drain can wait for their closes.
    connections: TaskTracker,
    next_id: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Every change up to this id has been fanned out. Meaningful while `Inner::following`.
    cursor: i64,
    /// The registered sockets, by tenant.
    tenants: HashMap<i64, HashMap<u64, Slot>>,
}

/// One registered socket, as the reader sees it.
struct Slot {
    subscription: Subscription,
    /// Set for a socket opened with an execution's own token: evicted (4401) when a change
    /// shows that execution no longer running.
    execution_id: Option<i64>,
    queue: mpsc::Sender<Live>,
    evict: oneshot::Sender<Eviction>,
}

/// A change on its way to a socket: its id, and its message serialised once for every
/// socket that gets it.
#[derive(Debug, Clone)]
pub struct Live {
    pub id: i64,
    pub text: Utf8Bytes,
}

/// Why the hub dropped a socket: the close code and reason it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub code: u16,
    pub reason: String,
}

/// A socket's place in the hub: its live queue (changes after `live_after`, pre-serialised
/// messages) and the signal of its eviction. Dropping it unregisters the socket.
pub struct Registration {
    hub: Arc<Inner>,
    tenant_id: i64,
    id: u64,
    /// Changes with ids up to this one come from the replay; the queue has those after it.
    pub live_after: i64,
    pub queue: mpsc::Receiver<Live>,
    pub evicted: oneshot::Receiver<Eviction>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        if let Some(slots) = state.tenants.get_mut(&self.tenant_id) {
            slots.remove(&self.id);
            if slots.is_empty() {
                state.tenants.remove(&self.tenant_id);
            }
        }
    }
}

/// The reader has not started (yet): the socket should come back later.
#[derive(Debug, thiserror::Error)]
#[error("the change stream is not running yet; reconnect shortly")]
pub struct NotReady;

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked (every change is one insert
        // or remove), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Hub {
    /// A hub for `ctx`'s database, with `ctx.config.notifier.socket_buffer` per socket.
    /// Nothing is read until [`Hub::run`] runs.
    pub fn new(ctx: Context) -> Hub {
        Hub::parking_after(ctx, PARK_AFTER)
    }

    /// As [`Hub::new`], parking after `idle` without sockets instead of [`PARK_AFTER`]
    /// (tests shorten it).
    pub fn parking_after(ctx: Context, idle: Duration) -> Hub {
        let socket_buffer = ctx.config.notifier.socket_buffer.max(1);
        Hub {
            inner: Arc::new(Inner {
                ctx,
                socket_buffer,
                state: Mutex::new(State::default()),
                ready: watch::Sender::new(false),
                following: watch::Sender::new(false),
                wanted: Notify::new(),
                park_after: idle,
                closing: CancellationToken::new(),
                connections: TaskTracker::new(),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// True while the reader follows the change log (false before it starts and while it
    /// is parked for want of sockets).
    pub fn following(&self) -> bool {
        *self.inner.following.borrow()
    }

    pub fn context(&self) -> &Context {
        &self.inner.ctx
    }

    /// Cancelled when the reader stops; sockets close then.
    pub fn closing(&self) -> &CancellationToken {
        &self.inner.closing
    }

    /// The open connections (each socket's task is tracked here).
    pub fn connections(&self) -> &TaskTracker {
        &self.inner.connections
    }

    /// Returns once the reader runs (subscriptions are served from then on).
    pub async fn ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        // Only fails if the sender is gone, and the hub holds it.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// How many sockets are registered (subscribed) now.
    pub fn sockets(&self) -> usize {
        self.inner.lock().tenants.values().map(HashMap::len).sum()
    }

    /// Registers a socket of `caller` for live delivery of `subscription`'s changes.
    pub async fn register(&self, caller: &Caller, subscription: Subscription) -> Result<Registration, NotReady> {
        let mut following = self.inner.following.subscribe();
        let give_up = tokio::time::sleep(READY_WAIT);
        tokio::pin!(give_up);
        loop {
            {
                // Registering and the reader parking take the same lock: a socket is either
                // registered while the reader follows, or the reader resumes for it.
                let mut state = self.inner.lock();
                if *self.inner.following.borrow() {
                    let (queue_tx, queue) = mpsc::channel(self.inner.socket_buffer);
                    let (evict, evicted) = oneshot::channel();
                    let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                    let slot = Slot { subscription, execution_id: caller.execution_id, queue: queue_tx, evict };
                    state.tenants.entry(caller.tenant_id).or_default().insert(id, slot);
                    let live_after = state.cursor;
                    drop(state);
                    let hub = self.inner.clone();
                    return Ok(Registration { hub, tenant_id: caller.tenant_id, id, live_after, queue, evicted });
                }
            }
            self.inner.wanted.notify_one();
            tokio::select! {
                r = following.wait_for(|f| *f) => r.map(|_| ()).map_err(|_| NotReady)?,
                _ = &mut give_up => return Err(NotReady),
                _ = self.inner.closing.cancelled() => return Err(NotReady),
            }
        }
    }

    /// The reader: tails the change log from its end and fans every change out, until
    /// `shutdown`. Then every socket is closed (1001: reconnect with `since`).
    pub async fn run(&self, shutdown: Shutdown) -> anyhow::Result<()> {
        let read = self.read(&shutdown).await;
        self.drain().await;
        if read.is_ok() {
            tracing::info!("notifier stopped");
        }
        read
    }

    /// Tails the log and fans out until `shutdown` (or a failure to listen for wake-ups).
    async fn read(&self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let ctx = &self.inner.ctx;
        let wakeup = ctx
            .notifier
            .subscribe(&Channel::CHANGES)
            .await
            .context("notifier: cannot listen for change-log wake-ups")?;
        let Some(mut tail) = self.start(shutdown).await else {
            return Ok(());
        };
        tracing::info!(cursor = tail.cursor(), "notifier: streaming the change log");
        let mut gap_retry = GAP_RETRY;
        let mut failing = false;
        let mut idle_since: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            if self.park_if_idle(&mut idle_since) {
                tracing::debug!("notifier: no sockets; parked");
                match self.resume(shutdown).await {
                    Some(resumed) => tail = resumed,
                    None => break,
                }
                tracing::debug!(cursor = tail.cursor(), "notifier: resumed for a socket");
                continue;
            }
            match tail.next(&ctx.pool, BATCH).await {
                Ok(changes) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("notifier: reading the change log again");
                    }
                    let full = changes.len() as i64 >= BATCH;
                    if !changes.is_empty() {
                        gap_retry = GAP_RETRY;
                    }
                    self.fan_out(&changes, tail.cursor());
                    if full {
                        continue;
                    }
                    if tail.at_gap() {
                        // The missing row's writer pokes when it commits: wake on that (a
                        // gap usually lasts one writer's commit) or retry soon — a
                        // rolled-back writer sends nothing.
                        wakeup.wait(gap_retry, shutdown).await;
                        gap_retry = (gap_retry * 2).min(POLL);
                        continue;
                    }
                    gap_retry = GAP_RETRY;
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %e, "notifier: cannot read the change log; retrying");
                    }
                    pause(RETRY, shutdown).await;
                }
            }
            wakeup.wait(POLL, shutdown).await;
        }
        Ok(())
    }

    /// Parks the reader when no socket has been registered for `park_after` (tracked in
    /// `idle_since`); true when it did.
    fn park_if_idle(&self, idle_since: &mut Option<Instant>) -> bool {
        // Held until the flag is down: a registration sees the hub follow, or parked.
        let state = self.inner.lock();
        if !state.tenants.is_empty() {
            *idle_since = None;
            return false;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < self.inner.park_after {
            return false;
        }
        self.inner.following.send_replace(false);
        *idle_since = None;
        true
    }

    /// Parked: waits for a registration, then finds the log's end again and follows from
    /// there; None at shutdown.
    async fn resume(&self, shutdown: &Shutdown) -> Option<Tail> {
        tokio::select! {
            _ = self.inner.wanted.notified() => {}
            _ = shutdown.cancelled() => return None,
        }
        self.anchor(shutdown).await
    }

    /// The tail at the log's end, with the hub following from there; None at shutdown.
    async fn anchor(&self, shutdown: &Shutdown) -> Option<Tail> {
        loop {
            let started = tokio::select! {
                started = Tail::at_end(&self.inner.ctx.pool) => started,
                _ = shutdown.cancelled() => return None,
            };
            match started {
                Ok(tail) => {
                    let mut state = self.inner.lock();
                    state.cursor = tail.cursor();
                    self.inner.following.send_replace(true);
                    return Some(tail);
                }
                Err(e) => tracing::warn!(error = %e, "notifier: cannot find the end of the change log; retrying"),
            }
            pause(RETRY, shutdown).await;
            if shutdown.is_cancelled() {
                return None;
            }
        }
    }

    /// Closes every socket (1001: reconnect with `since`) and waits, bounded, for them.
    async fn drain(&self) {
        let connections = &self.inner.connections;
        tracing::info!(sockets = connections.len(), "notifier draining: closing the WebSockets");
        self.inner.closing.cancel();
        connections.close();
        if tokio::time::timeout(DRAIN, connections.wait()).await.is_err() {
            tracing::info!(sockets = connections.len(), "notifier: sockets still closing; leaving them");
        }
    }

    /// The tail at the log's end, and the hub ready from there; None at shutdown.
    async fn start(&self, shutdown: &Shutdown) -> Option<Tail> {
        let tail = self.anchor(shutdown).await?;
        self.inner.ready.send_replace(true);
        Some(tail)
    }

    /// Hands `changes` (in id order) to the matching sockets and moves the cursor to
    /// `cursor` (the tail's: everything up to it is now delivered or never will exist).
    fn fan_out(&self, changes: &[Change], cursor: i64) {
        let mut state = self.inner.lock();
        for change in changes {
            // Rows without a tenant (none today) are never sent to anyone.
            let Some(tenant_id) = change.tenant_id else { continue };
            let Some(slots) = state.tenants.get_mut(&tenant_id) else { continue };
            let evicted = self.deliver(change, slots);
            for (id, eviction) in evicted {
                if let Some(slot) = slots.remove(&id) {
                    // The socket may be gone already; then nobody needs telling.
                    let _ = slot.evict.send(eviction);
                }
            }
            if slots.is_empty() {
                state.tenants.remove(&tenant_id);
            }
        }
        state.cursor = cursor;
    }

    /// Queues `change` for the matching sockets of its tenant; returns those to evict.
    fn deliver(&self, change: &Change, slots: &mut HashMap<u64, Slot>) -> Vec<(u64, Eviction)> {
        let mut evicted = Vec::new();
        let mut message: Option<Live> = None;
        for (id, slot) in slots.iter() {
            if let Some(eviction) = token_ended(slot, change) {
                evicted.push((*id, eviction));
                continue;
            }
            if !slot.subscription.matches(&change.entity_type, change.entity_id) {
                continue;
            }
            let message =
                message.get_or_insert_with(|| Live { id: change.id, text: Utf8Bytes::from(change.message()) });
            match slot.queue.try_send(message.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(
                        tenant_id = change.tenant_id,
                        behind = self.inner.socket_buffer,
                        "notifier: closing a WebSocket that fell too far behind"
                    );
                    evicted.push((*id, too_slow(self.inner.socket_buffer)));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    evicted.push((*id, Eviction { code: close::GOING_AWAY, reason: String::new() }));
                }
            }
        }
        evicted
    }
}

/// The eviction of a socket whose queue of `behind` messages is full.
fn too_slow(behind: usize) -> Eviction {
    Eviction {
        code: close::TOO_SLOW,
        reason: format!("too slow: {behind} messages behind; reconnect with since = the last id you received"),
    }
}

/// For a socket holding an execution's token: its eviction when `change` shows that
/// execution no longer running.
fn token_ended(slot: &Slot, change: &Change) -> Option<Eviction> {
    let execution = slot.execution_id?;
    if change.entity_type != "execution" || change.entity_id != execution {
        return None;
    }
    let status = change.status().and_then(|s| ExecutionStatus::parse(&s).ok())?;
    (!auth::runs(status)).then(|| Eviction { code: close::UNAUTHORIZED, reason: auth::execution_ended(execution) })
}

/// Sleeps `how_long`, or less at shutdown.
async fn pause(how_long: Duration, shutdown: &Shutdown) {
    tokio::select! {
        _ = tokio::time::sleep(how_long) => {}
        _ = shutdown.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EntityTypes;
    use serde_json::json;

    fn change(id: i64, tenant_id: Option<i64>, entity_type: &str, entity_id: i64, status: &str) -> Change {
        Change {
            id,
            tenant_id,
            entity_type: entity_type.into(),
            entity_id,
            event: format!("{entity_type}.status_changed"),
            data: sqlx::types::Json(serde_json::value::to_raw_value(&json!({"status": status})).unwrap()),
            created_at: chrono::Utc::now(),
        }
    }

    fn caller(tenant_id: i64, execution_id: Option<i64>) -> Caller {
        Caller { tenant_id, identity_id: 1, login: "u".into(), execution_id, expires_at: i64::MAX }
    }

    fn every_type() -> Subscription {
        Subscription { entity_types: EntityTypes::all(), entity_id: None, since: None }
    }

    /// A hub over a pool that never connects: these tests never reach the database.
    fn hub(socket_buffer: usize) -> Hub {
        let mut config = attune_core::Config::default();
        config.notifier.socket_buffer = socket_buffer;
        let pool = sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let keys = attune_core::bootstrap::Keys {
            jwt_secret: b"secret".to_vec(),
            encryption: attune_core::keyring::Keyring::single([0; 32]),
        };
        let hub = Hub::new(Context::new(config, pool, keys));
        hub.inner.ready.send_replace(true);
        hub.inner.following.send_replace(true);
        hub
    }

    fn texts(queue: &mut mpsc::Receiver<Live>) -> Vec<i64> {
        let mut ids = Vec::new();
        while let Ok(live) = queue.try_recv() {
            let v: serde_json::Value = serde_json::from_str(&live.text).unwrap();
            assert_eq!(v["id"], live.id);
            ids.push(live.id);
        }
        ids
    }

    #[tokio::test]
    async fn only_the_tenants_matching_changes_are_queued() {
        let hub = hub(16);
        let mut a = hub.register(&caller(1, None), every_type()).await.unwrap();
        let only_rules = Subscription { entity_types: EntityTypes::parse(&["rule".into()]).unwrap(), ..every_type() };
        let mut rules = hub.register(&caller(1, None), only_rules).await.unwrap();
        let one = Subscription { entity_id: Some(7), ..every_type() };
        let mut seven = hub.register(&caller(1, None), one).await.unwrap();
        let mut b = hub.register(&caller(2, None), every_type()).await.unwrap();
        hub.fan_out(
            &[
                change(1, Some(1), "execution", 7, "running"),
                change(2, Some(2), "execution", 8, "running"),
                change(3, None, "execution", 9, "running"),
                change(4, Some(1), "rule", 3, "x"),
            ],
            4,
        );
        assert_eq!(texts(&mut a.queue), [1, 4]);
        assert_eq!(texts(&mut rules.queue), [4]);
        assert_eq!(texts(&mut seven.queue), [1]);
        assert_eq!(texts(&mut b.queue), [2], "another tenant's changes, and tenantless rows, never");
        assert_eq!(hub.register(&caller(1, None), every_type()).await.unwrap().live_after, 4);
    }

    #[tokio::test]
    async fn a_full_queue_evicts_only_that_socket() {
        let hub = hub(2);
        let mut slow = hub.register(&caller(1, None), every_type()).await.unwrap();
        let mut fast = hub.register(&caller(1, None), every_type()).await.unwrap();
        for id in 1..=3 {
            hub.fan_out(&[change(id, Some(1), "event", id, "x")], id);
            assert_eq!(texts(&mut fast.queue), [id]);
        }
        let eviction = slow.evicted.try_recv().expect("the slow socket is evicted");
        assert_eq!(eviction.code, close::TOO_SLOW);
        assert!(eviction.reason.contains("2 messages behind"), "{}", eviction.reason);
        assert_eq!(hub.sockets(), 1);
        drop(fast);
        assert_eq!(hub.sockets(), 0, "dropping a registration unregisters it");
    }

    #[tokio::test]
    async fn an_execution_token_socket_is_evicted_when_its_execution_ends() {
        let hub = hub(16);
        let mut own = hub.register(&caller(1, Some(5)), every_type()).await.unwrap();
        hub.fan_out(&[change(1, Some(1), "execution", 6, "succeeded")], 1);
        hub.fan_out(&[change(2, Some(1), "execution", 5, "canceling")], 2);
        assert!(own.evicted.try_recv().is_err(), "still running");
        hub.fan_out(&[change(3, Some(1), "execution", 5, "succeeded")], 3);
        assert_eq!(own.evicted.try_recv().unwrap().code, close::UNAUTHORIZED);
    }
}
