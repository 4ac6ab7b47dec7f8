//! Wake-ups: LISTEN on channels, with a polling fallback.
//!
//! A NOTIFY is only a hint that there may be work: consumers read their state from tables,
//! so a missed hint (a dropped connection, a restart) costs at most one poll interval.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::Shutdown;

/// Wakes its owner when one of its channels is notified.
pub struct Wakeup {
    notify: Arc<Notify>,
}

/// Waiters of this process by channel: a [`Hint`] wakes them directly, without the
/// NOTIFY's round trip (other processes still get the NOTIFY).
type Waiters = Mutex<HashMap<&'static str, Vec<Weak<Notify>>>>;

fn local_waiters() -> &'static Waiters {
    static WAITERS: OnceLock<Waiters> = OnceLock::new();
    WAITERS.get_or_init(Default::default)
}

impl Wakeup {
    /// Listens on `channels` on a connection of its own until `shutdown`.
    pub async fn listen(pool: &PgPool, channels: &[&'static str], shutdown: Shutdown) -> Result<Wakeup, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen_all(channels.iter().copied()).await?;
        let notify = Arc::new(Notify::new());
        {
            let mut waiters = local_waiters().lock().expect("waiters lock");
            for channel in channels {
                let list = waiters.entry(channel).or_default();
                list.retain(|w| w.strong_count() > 0);
                list.push(Arc::downgrade(&notify));
            }
        }
        let hint = notify.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    received = listener.try_recv() => match received {
                        Ok(Some(_)) => hint.notify_one(),
                        // The connection was lost and is re-established by the next call;
                        // wake the owner, which re-reads the tables.
                        Ok(None) => hint.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN connection failed; polling until it is back");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                }
            }
        });
        Ok(Wakeup { notify })
    }

    /// Returns when a notification (or a same-process hint) arrives.
    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Returns on a notification, after `poll`, or at shutdown, whichever comes first.
    pub async fn wait(&self, poll: Duration, shutdown: &Shutdown) {
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
#[derive(Clone)]
pub struct Hint {
    channel: &'static str,
    dirty: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl Hint {
    pub fn spawn(pool: PgPool, channel: &'static str, shutdown: Shutdown) -> Hint {
        let hint = Hint { channel, dirty: Arc::new(AtomicBool::new(false)), wake: Arc::new(Notify::new()) };
        let (dirty, wake) = (hint.dirty.clone(), hint.wake.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = shutdown.cancelled() => break,
                }
                while dirty.swap(false, Ordering::AcqRel) {
                    if let Err(e) = sqlx::query("SELECT pg_notify($1, '')").bind(channel).execute(&pool).await {
                        // Only a hint: the consumer polls anyway.
                        tracing::debug!(error = %e, channel, "hint not sent");
                    }
                }
            }
        });
        hint
    }

    /// Asks for a NOTIFY soon (call after the producer's commit).
    pub fn poke(&self) {
        if let Some(waiters) = local_waiters().lock().expect("waiters lock").get(self.channel) {
            for waiter in waiters.iter().filter_map(Weak::upgrade) {
                waiter.notify_one();
            }
        }
        self.dirty.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}
