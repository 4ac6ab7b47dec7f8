//! Wake-ups: LISTEN on channels, with a polling fallback.
//!
//! A NOTIFY is only a hint that there may be work: consumers read their state from tables,
//! so a missed hint (a dropped connection, a restart) costs at most one poll interval.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::Notify;

use crate::Shutdown;

/// Wakes its owner when one of its channels is notified.
pub struct Wakeup {
    notify: Arc<Notify>,
}

impl Wakeup {
    /// Listens on `channels` on a connection of its own until `shutdown`.
    pub async fn listen(pool: &PgPool, channels: &[&str], shutdown: Shutdown) -> Result<Wakeup, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen_all(channels.iter().copied()).await?;
        let notify = Arc::new(Notify::new());
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

    /// Returns on a notification, after `poll`, or at shutdown, whichever comes first.
    pub async fn wait(&self, poll: Duration, shutdown: &Shutdown) {
        tokio::select! {
            _ = self.notify.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
