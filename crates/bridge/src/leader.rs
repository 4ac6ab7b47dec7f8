//! One active publisher across processes: a session-level advisory lock held on a
//! connection of its own for as long as this process publishes.
//!
//! Every bridge process runs the outbound loop, but only the holder of the lock publishes;
//! the others stand by and retry every [`STANDBY_POLL`]. The cursor is read and written on
//! the lock's own session, so a write can only come from the holder: when that session
//! ends (a crash, a dropped connection, a server restart) PostgreSQL releases the lock with
//! it, the holder's next write fails and it stops publishing, and a standby takes over
//! from the stored cursor. Between the loss and the failed write the old holder may still
//! publish a batch: a duplicate, never a loss (consumers dedupe on `id`).

use std::time::Duration;

use attune_core::Shutdown;
use sqlx::{Connection, PgConnection, PgPool};

use crate::amqp::Backoff;

/// The `consumer_cursor` row of the bridge's publisher.
pub const CURSOR_NAME: &str = "bridge";

/// The advisory lock's name (hashed to its key).
const LOCK_NAME: &str = "attune.bridge.publisher";

/// How often a standby process tries to take over: the longest a dead publisher's work
/// waits once PostgreSQL has ended its session.
pub const STANDBY_POLL: Duration = Duration::from_secs(2);

/// The held lock, and the session that holds it.
pub struct Leadership {
    conn: PgConnection,
}

impl Leadership {
    /// Waits until this process holds the publisher lock; None when `shutdown` came first.
    /// Database errors are logged and retried with backoff.
    pub async fn acquire(pool: &PgPool, shutdown: &Shutdown) -> Option<Leadership> {
        let mut backoff = Backoff::new();
        let mut standing_by = false;
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            match Self::try_acquire(pool).await {
                Ok(Some(leadership)) => {
                    tracing::info!("bridge: this process now publishes the change log to RabbitMQ");
                    return Some(leadership);
                }
                Ok(None) => {
                    if !standing_by {
                        tracing::info!("bridge: another process publishes the change log; standing by");
                        standing_by = true;
                    }
                    backoff.reset();
                    tokio::select! {
                        _ = tokio::time::sleep(STANDBY_POLL) => {}
                        _ = shutdown.cancelled() => return None,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "bridge: cannot take the publisher lock; retrying");
                    if !backoff.sleep(shutdown).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn try_acquire(pool: &PgPool) -> Result<Option<Leadership>, sqlx::Error> {
        // The lock lives exactly as long as this session.
        let mut conn = attune_core::db::session_connection(pool).await?;
        let held = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS "held!""#, LOCK_NAME)
            .fetch_one(&mut conn)
            .await?;
        if held {
            Ok(Some(Leadership { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// The stored cursor: the last id RabbitMQ confirmed (0 when the bridge never ran).
    pub async fn cursor(&mut self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query_file_scalar!("../../sql/bridge/cursor_load.sql", CURSOR_NAME)
            .fetch_optional(&mut self.conn)
            .await?;
        Ok(row.unwrap_or(0))
    }

    /// Stores `cursor` (never moving it back). Fails when the lock's session is gone.
    pub async fn store(&mut self, cursor: i64) -> Result<(), sqlx::Error> {
        sqlx::query_file!("../../sql/bridge/cursor_store.sql", CURSOR_NAME, cursor).execute(&mut self.conn).await?;
        Ok(())
    }

    /// Fails when the lock's session is gone (checked while there is nothing to publish).
    pub async fn check(&mut self) -> Result<(), sqlx::Error> {
        self.conn.ping().await
    }

    /// Ends the session, which releases the lock: a standby takes over.
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }
}
