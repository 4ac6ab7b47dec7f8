//! Wake-ups: one LISTEN connection per process, coalesced NOTIFY hints, polling fallback.
//!
//! A NOTIFY is only a hint that there may be work: consumers read their state from tables,
//! so a missed hint (a dropped connection, a restart) costs at most one poll interval.
//!
//! Every service of a process subscribes through the [`Notifier`] in its [`Context`]
//! (`ctx.notifier`): it holds a single listening connection for every [`Channel`] (there
//! are few, and a hint nobody here waits for costs one ignored message), started by the
//! first subscriber. After a lost connection it reconnects, LISTENs again and wakes every
//! subscriber, since hints may have been missed meanwhile.
//!
//! A wake-up costs its subscriber a look at the tables, so hints wake only who they are
//! for. A [`Hint`] wakes the subscribers of its own process directly and sends its NOTIFY
//! for the other processes only: the payload names the sending process, whose listener
//! ignores it (`attune up` runs every service in one process, where each hint used to wake
//! its subscribers twice). And a hint sends no NOTIFY at all while no other process
//! listens: each listening connection is named `attune listener <process>`
//! (`application_name`, so `pg_stat_activity` shows it), and every process that sends hints
//! looks for another such name once a second ([`LISTENERS_EVERY`]). A process that starts
//! listening is heard from within that second; until then its services poll, as after
//! any missed hint. A hint may also carry [`Tags`] — on `Scheduled`, the runner
//! types admitted; on `Change`, whether the rows concern a workflow's task
//! ([`Tags::CHANGES`]) — and wakes only the subscribers that asked for one of them: a
//! `core.noop` task wakes the worker lane that runs builtins, not the other lanes, the
//! workflow engine or the inquiries. Untagged hints, and NOTIFYs sent by SQL, wake
//! everyone subscribed to the channel.
//!
//! [`Context`]: crate::Context

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::FutureExt;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::domain::RunnerType;

/// Every channel Attune notifies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// New events (webhooks, timers, sensors): wakes the rule engine.
    Event,
    /// Rules or actions changed: the rule engine's cache, the sensor service.
    Rule,
    /// Triggers changed: timers and custom sensors.
    Timer,
    /// Executions waiting for admission: the scheduler.
    Requested,
    /// Executions ready to run: the workers.
    Scheduled,
    /// Cancel requests: the workers running them.
    Cancel,
    /// Change-log rows committed that no other channel announced (a result, a reaped
    /// execution, an enforcement without a run): the notifier and the bridge, and the
    /// workflow engine (a task may have ended).
    Change,
    /// Executions a worker claimed (now `running`): change-log rows for the notifier and
    /// the bridge only — no other component acts on a claim, so it wakes nothing else.
    Claimed,
}

impl Channel {
    pub const ALL: [Channel; 8] = [
        Channel::Event,
        Channel::Rule,
        Channel::Timer,
        Channel::Requested,
        Channel::Scheduled,
        Channel::Cancel,
        Channel::Change,
        Channel::Claimed,
    ];

    /// Every channel whose wake-up means new change-log rows (the notifier's and bridge's).
    pub const CHANGES: [Channel; 6] =
        [Channel::Event, Channel::Requested, Channel::Scheduled, Channel::Cancel, Channel::Change, Channel::Claimed];

    /// The PostgreSQL channel name (migrations NOTIFY on some of them too).
    pub fn name(self) -> &'static str {
        match self {
            Channel::Event => "attune_event",
            Channel::Rule => "attune_rule",
            Channel::Timer => "attune_timer",
            Channel::Requested => "attune_requested",
            Channel::Scheduled => "attune_scheduled",
            Channel::Cancel => "attune_cancel",
            Channel::Change => "attune_change",
            Channel::Claimed => "attune_claimed",
        }
    }

    fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// What a hint is about, as a set of bits: on [`Channel::Scheduled`], the runner types of
/// the executions admitted ([`Tags::runners`]). A subscriber is woken by a hint that shares
/// a bit with what it asked for; [`Tags::ALL`] (untagged) shares one with everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tags(u32);

impl Tags {
    pub const ALL: Tags = Tags(u32::MAX);
    pub const NONE: Tags = Tags(0);
    /// On [`Channel::Change`]: new change-log rows that only their readers (the notifier,
    /// the bridge) act on — an enforcement, an admission, a result that is no workflow's
    /// task. Readers subscribe untagged; the workflow engine asks for `workflow` only.
    pub const CHANGES: Tags = Tags(1 << 31);

    /// The tags of executions of these runner types.
    pub fn runners(runners: impl IntoIterator<Item = RunnerType>) -> Tags {
        Tags(runners.into_iter().fold(0, |bits, r| bits | 1 << r as u32))
    }

    pub fn with(self, other: Tags) -> Tags {
        Tags(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn meets(self, other: Tags) -> bool {
        self.0 & other.0 != 0
    }
}

impl Default for Tags {
    /// No tags: a hint about nothing wakes nobody.
    fn default() -> Tags {
        Tags::NONE
    }
}

/// A subscriber: whom to wake, and for which tags.
struct Subscriber {
    notify: Weak<Notify>,
    tags: Tags,
}

type Subscribers = Mutex<HashMap<Channel, Vec<Subscriber>>>;

/// The NOTIFY payload of a hint: `<sending process>` or `<sending process>:<tags>`.
fn payload(process: &str, tags: Tags) -> String {
    if tags == Tags::ALL {
        process.to_string()
    } else {
        format!("{process}:{:x}", tags.0)
    }
}

/// Who sent a NOTIFY and what it is about (empty, or not ours: from SQL, about everything).
fn parse_payload(payload: &str) -> (Option<&str>, Tags) {
    match payload.split_once(':') {
        Some((process, tags)) => (Some(process), u32::from_str_radix(tags, 16).map_or(Tags::ALL, Tags)),
        None if payload.is_empty() => (None, Tags::ALL),
        None => (Some(payload), Tags::ALL),
    }
}

/// The process's wake-ups: one listening connection, and one coalescing sender per channel.
/// Cheap to clone; the connection closes when the last clone is dropped.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// Names this process in its NOTIFY payloads, so its listener can skip its own.
    process: Arc<str>,
    /// Whether another process listens (NOTIFYs are sent only then); kept up to date by the
    /// task the first hint starts.
    others_listen: Arc<AtomicBool>,
    census: std::sync::Once,
    subscribers: Arc<Subscribers>,
    /// Set once the listening connection is up (by the first subscriber).
    listening: OnceCell<()>,
    hints: Mutex<HashMap<Channel, Hint>>,
    /// Cancelled when the last handle goes: ends the listener and the hint senders.
    closed: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl Notifier {
    pub fn new(pool: PgPool) -> Notifier {
        Notifier {
            inner: Arc::new(Inner {
                pool,
                process: format!("{:016x}", rand::random::<u64>()).into(),
                // Until the first look says otherwise, NOTIFYs go out.
                others_listen: Arc::new(AtomicBool::new(true)),
                census: std::sync::Once::new(),
                subscribers: Default::default(),
                listening: OnceCell::new(),
                hints: Default::default(),
                closed: CancellationToken::new(),
            }),
        }
    }

    /// A wake-up for `channels`. The first subscriber of the process opens the listening
    /// connection; an error doing so is returned (later losses are retried in the
    /// background, with everyone polling meanwhile).
    pub async fn subscribe(&self, channels: &[Channel]) -> Result<Wakeup, sqlx::Error> {
        self.subscribe_tagged(channels, Tags::ALL).await
    }

    /// A wake-up for `channels` by untagged hints and by those tagged with one of `tags`.
    pub async fn subscribe_tagged(&self, channels: &[Channel], tags: Tags) -> Result<Wakeup, sqlx::Error> {
        self.inner.listening.get_or_try_init(|| self.start_listening()).await?;
        let notify = Arc::new(Notify::new());
        let mut subscribers = self.inner.subscribers.lock().expect("subscribers lock");
        for channel in channels {
            let list = subscribers.entry(*channel).or_default();
            list.retain(|s| s.notify.strong_count() > 0);
            list.push(Subscriber { notify: Arc::downgrade(&notify), tags });
        }
        Ok(Wakeup { notify })
    }

    async fn start_listening(&self) -> Result<(), sqlx::Error> {
        // A connection of its own (out of the services' pool), named after this process
        // whenever it (re)connects: how other processes know it listens.
        let options = (*self.inner.pool.connect_options())
            .clone()
            .application_name(&format!("{LISTENER_NAME}{}", self.inner.process));
        let pool = PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen_all(Channel::ALL.iter().map(|c| c.name())).await?;
        tokio::spawn(listen_loop(
            listener,
            self.inner.process.clone(),
            self.inner.subscribers.clone(),
            self.inner.closed.clone(),
        ));
        Ok(())
    }

    /// The coalescing NOTIFY sender for `channel` (one per channel per process).
    pub fn hint(&self, channel: Channel) -> Hint {
        self.inner.census.call_once(|| {
            tokio::spawn(census(
                self.inner.pool.clone(),
                self.inner.process.clone(),
                self.inner.others_listen.clone(),
                self.inner.closed.clone(),
            ));
        });
        let mut hints = self.inner.hints.lock().expect("hints lock");
        hints.entry(channel).or_insert_with(|| Hint::spawn(&self.inner, channel)).clone()
    }
}

/// `application_name` of a process's listening connection, followed by the process's name.
pub const LISTENER_NAME: &str = "attune listener ";

/// How often a process that sends hints looks whether another one listens.
pub const LISTENERS_EVERY: Duration = Duration::from_secs(1);

/// Keeps `others_listen` up to date until the notifier is dropped. An error keeps the
/// NOTIFYs going (the safe side).
async fn census(pool: PgPool, process: Arc<str>, others_listen: Arc<AtomicBool>, closed: CancellationToken) {
    let pattern = format!("{LISTENER_NAME}%");
    let mine = format!("{LISTENER_NAME}{process}");
    loop {
        let others = sqlx::query_file_scalar!("../../sql/wakeup/other_listeners.sql", pattern, mine)
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "cannot tell whether another process listens; hints go out");
                true
            });
        others_listen.store(others, Ordering::Release);
        tokio::select! {
            _ = closed.cancelled() => return,
            _ = tokio::time::sleep(LISTENERS_EVERY) => {}
        }
    }
}

/// Wakes the subscribers of `channel` (all channels: `None`) that asked for one of `tags`.
fn wake(subscribers: &Subscribers, channel: Option<Channel>, tags: Tags) {
    let subscribers = subscribers.lock().expect("subscribers lock");
    let lists: Vec<&Vec<Subscriber>> = match channel {
        Some(c) => subscribers.get(&c).into_iter().collect(),
        None => subscribers.values().collect(),
    };
    for s in lists.into_iter().flatten().filter(|s| s.tags.meets(tags)) {
        if let Some(waiter) = s.notify.upgrade() {
            waiter.notify_one();
        }
    }
}

/// Receives notifications until the notifier is dropped. `PgListener` reconnects and
/// LISTENs again by itself on the next receive after a lost connection.
/// A notification this process sent itself is skipped: its hint woke the subscribers here
/// when it was poked.
async fn listen_loop(
    mut listener: PgListener,
    process: Arc<str>,
    subscribers: Arc<Subscribers>,
    closed: CancellationToken,
) {
    let mut lost = false;
    loop {
        let received = tokio::select! {
            _ = closed.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(n)) => {
                if std::mem::take(&mut lost) {
                    tracing::info!("LISTEN connection is back");
                    wake(&subscribers, None, Tags::ALL);
                }
                let (sender, tags) = parse_payload(n.payload());
                if sender != Some(&*process) {
                    if let Some(channel) = Channel::from_name(n.channel()) {
                        wake(&subscribers, Some(channel), tags);
                    }
                }
            }
            // Reconnected (and listening again): hints may have been missed meanwhile.
            Ok(None) => {
                crate::metrics::listen_reconnect();
                wake(&subscribers, None, Tags::ALL)
            }
            Err(e) => {
                if !lost {
                    tracing::warn!(error = %e, "LISTEN connection failed; polling until it is back");
                }
                lost = true;
                wake(&subscribers, None, Tags::ALL);
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Wakes its owner when one of its channels is notified.
pub struct Wakeup {
    notify: Arc<Notify>,
}

impl Wakeup {
    /// Returns when a notification (or a same-process hint) arrives.
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Forgets a wake-up that arrived since the last wait (the caller is about to look
    /// anyway, so it would only cost a second look).
    pub fn clear(&self) {
        let _ = self.notify.notified().now_or_never();
    }

    /// Returns on a notification, after `poll`, or at `shutdown`, whichever comes first.
    pub async fn wait(&self, poll: Duration, shutdown: &CancellationToken) {
        tokio::select! {
            _ = self.notify.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

/// Sends NOTIFY hints on a channel from outside the producer's transaction, coalesced: a
/// burst of pokes costs one NOTIFY in flight at a time, not one per row. (A NOTIFY inside
/// a transaction serialises that commit with every other notifying commit of the cluster.)
/// Subscribers of the same process are woken directly, without the round trip; the
/// NOTIFY (its tags: those of every poke since the last one sent) is for other processes.
#[derive(Clone)]
pub struct Hint {
    channel: Channel,
    subscribers: Arc<Subscribers>,
    /// The tags poked since the last NOTIFY was sent (none: nothing to send).
    dirty: Arc<AtomicU32>,
    wake: Arc<Notify>,
}

impl Hint {
    fn spawn(inner: &Inner, channel: Channel) -> Hint {
        let hint = Hint {
            channel,
            subscribers: inner.subscribers.clone(),
            dirty: Arc::new(AtomicU32::new(0)),
            wake: Arc::new(Notify::new()),
        };
        let (dirty, wake) = (hint.dirty.clone(), hint.wake.clone());
        let (pool, process, closed) = (inner.pool.clone(), inner.process.clone(), inner.closed.clone());
        let others_listen = inner.others_listen.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = closed.cancelled() => break,
                }
                loop {
                    let tags = Tags(dirty.swap(0, Ordering::AcqRel));
                    if tags.is_empty() {
                        break;
                    }
                    if !others_listen.load(Ordering::Acquire) {
                        // Nobody else to tell: the subscribers here were woken by the poke.
                        continue;
                    }
                    let sent = sqlx::query!("SELECT pg_notify($1, $2)", channel.name(), payload(&process, tags))
                        .execute(&pool)
                        .await;
                    if let Err(e) = sent {
                        // Only a hint: the consumer polls anyway.
                        tracing::debug!(error = %e, channel = channel.name(), "hint not sent");
                    }
                }
            }
        });
        hint
    }

    /// Wakes every subscriber and asks for a NOTIFY soon (call after the producer's commit).
    pub fn poke(&self) {
        self.poke_tagged(Tags::ALL);
    }

    /// Wakes the subscribers that asked for one of `tags` (here at once, in other
    /// processes by the NOTIFY). No tags: nothing to wake.
    pub fn poke_tagged(&self, tags: Tags) {
        if tags.is_empty() {
            return;
        }
        wake(&self.subscribers, Some(self.channel), tags);
        self.dirty.fetch_or(tags.0, Ordering::AcqRel);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_sender_and_the_tags() {
        let shell = Tags::runners([RunnerType::Shell]);
        assert_eq!(parse_payload(&payload("ab12", shell)), (Some("ab12"), shell));
        assert_eq!(parse_payload(&payload("ab12", Tags::ALL)), (Some("ab12"), Tags::ALL));
        // From SQL (no payload) or unreadable tags: about everything.
        assert_eq!(parse_payload(""), (None, Tags::ALL));
        assert_eq!(parse_payload("ab12:zz"), (Some("ab12"), Tags::ALL));
    }

    #[test]
    fn tags_meet_when_they_share_a_runner_type() {
        let builtin = Tags::runners([RunnerType::Builtin]);
        let lane = Tags::runners([RunnerType::Shell, RunnerType::Python]);
        assert!(!builtin.meets(lane));
        assert!(builtin.with(Tags::runners([RunnerType::Python])).meets(lane));
        assert!(Tags::ALL.meets(lane) && lane.meets(Tags::ALL));
        assert!(!Tags::NONE.meets(Tags::ALL));
        // Every runner type has a bit of its own.
        let bits: Vec<Tags> = RunnerType::ALL.iter().map(|r| Tags::runners([*r])).collect();
        for (i, a) in bits.iter().enumerate() {
            for (j, b) in bits.iter().enumerate() {
                assert_eq!(a.meets(*b), i == j);
            }
        }
    }
}
