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
//! [`Context`]: crate::Context

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{Notify, OnceCell};
use tokio_util::sync::CancellationToken;

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

type Subscribers = Mutex<HashMap<Channel, Vec<Weak<Notify>>>>;

/// The process's wake-ups: one listening connection, and one coalescing sender per channel.
/// Cheap to clone; the connection closes when the last clone is dropped.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
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
        self.inner.listening.get_or_try_init(|| self.start_listening()).await?;
        let notify = Arc::new(Notify::new());
        let mut subscribers = self.inner.subscribers.lock().expect("subscribers lock");
        for channel in channels {
            let list = subscribers.entry(*channel).or_default();
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(&notify));
        }
        Ok(Wakeup { notify })
    }

    async fn start_listening(&self) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.inner.pool).await?;
        listener.listen_all(Channel::ALL.iter().map(|c| c.name())).await?;
        tokio::spawn(listen_loop(listener, self.inner.subscribers.clone(), self.inner.closed.clone()));
        Ok(())
    }

    /// The coalescing NOTIFY sender for `channel` (one per channel per process).
    pub fn hint(&self, channel: Channel) -> Hint {
        let mut hints = self.inner.hints.lock().expect("hints lock");
        hints
            .entry(channel)
            .or_insert_with(|| {
                Hint::spawn(self.inner.pool.clone(), channel, self.inner.subscribers.clone(), self.inner.closed.clone())
            })
            .clone()
    }
}

fn wake(subscribers: &Subscribers, channel: Option<Channel>) {
    let subscribers = subscribers.lock().expect("subscribers lock");
    let lists: Vec<&Vec<Weak<Notify>>> = match channel {
        Some(c) => subscribers.get(&c).into_iter().collect(),
        None => subscribers.values().collect(),
    };
    for waiter in lists.into_iter().flatten().filter_map(Weak::upgrade) {
        waiter.notify_one();
    }
}

/// Receives notifications until the notifier is dropped. `PgListener` reconnects and
/// LISTENs again by itself on the next receive after a lost connection.
async fn listen_loop(mut listener: PgListener, subscribers: Arc<Subscribers>, closed: CancellationToken) {
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
                    wake(&subscribers, None);
                }
                wake(&subscribers, Channel::from_name(n.channel()));
            }
            // Reconnected (and listening again): hints may have been missed meanwhile.
            Ok(None) => {
                crate::metrics::listen_reconnect();
                wake(&subscribers, None)
            }
            Err(e) => {
                if !lost {
                    tracing::warn!(error = %e, "LISTEN connection failed; polling until it is back");
                }
                lost = true;
                wake(&subscribers, None);
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
/// Subscribers of the same process are woken directly, without the round trip.
#[derive(Clone)]
pub struct Hint {
    channel: Channel,
    subscribers: Arc<Subscribers>,
    dirty: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl Hint {
    fn spawn(pool: PgPool, channel: Channel, subscribers: Arc<Subscribers>, closed: CancellationToken) -> Hint {
        let hint =
            Hint { channel, subscribers, dirty: Arc::new(AtomicBool::new(false)), wake: Arc::new(Notify::new()) };
        let (dirty, wake) = (hint.dirty.clone(), hint.wake.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = closed.cancelled() => break,
                }
                while dirty.swap(false, Ordering::AcqRel) {
                    let sent = sqlx::query!("SELECT pg_notify($1, '')", channel.name()).execute(&pool).await;
                    if let Err(e) = sent {
                        // Only a hint: the consumer polls anyway.
                        tracing::debug!(error = %e, channel = channel.name(), "hint not sent");
                    }
                }
            }
        });
        hint
    }

    /// Asks for a NOTIFY soon (call after the producer's commit).
    pub fn poke(&self) {
        wake(&self.subscribers, Some(self.channel));
        self.dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}
