//! The shape every service shares: `run(ctx, shutdown) -> Result<()>`.
//!
//! A service stops *taking* work when `shutdown` is cancelled, drains what it holds, and
//! returns. The `attune` binary runs any subset of services against one [`Context`].

use std::sync::Arc;

use sqlx::PgPool;

use crate::bootstrap::Keys;
use crate::handoff::Lanes;
use crate::tokens::TokenKeys;
use crate::wakeup::Notifier;
use crate::Config;

/// Cancelled once, when the process is asked to stop.
pub type Shutdown = tokio_util::sync::CancellationToken;

/// What a service needs: settings, the pool, the process's keys, its token signer
/// (built from the config once), its wake-ups (one LISTEN connection for all services)
/// and the register of its worker lanes that take hand-offs.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub keys: Arc<Keys>,
    pub tokens: Arc<TokenKeys>,
    pub notifier: Notifier,
    /// This process's worker lanes that take manual runs handed to them.
    pub lanes: Lanes,
}

impl Context {
    pub fn new(config: Config, pool: PgPool, keys: Keys) -> Self {
        let auth = &config.auth;
        let tokens = TokenKeys::new(&keys.jwt_secret, auth.access_token_ttl_seconds, auth.refresh_token_ttl_seconds);
        let notifier = Notifier::new(pool.clone());
        Context {
            config: Arc::new(config),
            pool,
            keys: Arc::new(keys),
            tokens: Arc::new(tokens),
            notifier,
            lanes: Lanes::default(),
        }
    }

    /// The same settings and keys over another pool, with wake-ups and lanes of its own: how another
    /// process sharing the database sees it (tests run several "processes" in one).
    pub fn with_pool(&self, pool: PgPool) -> Context {
        let notifier = Notifier::new(pool.clone());
        Context { pool, notifier, lanes: Lanes::default(), ..self.clone() }
    }
}

/// Runs one part of a service; if it fails, `stop` is cancelled so the other parts
/// return too (a service whose parts run under one `tokio::join!`).
pub async fn stopping_others(
    part: impl std::future::Future<Output = anyhow::Result<()>>,
    stop: &Shutdown,
) -> anyhow::Result<()> {
    let result = part.await;
    if result.is_err() {
        stop.cancel();
    }
    result
}

/// Logs `draining` (what the service does with what it holds) when the process asks it to
/// stop — not when `stop` was cancelled because a part failed.
pub async fn announce_drain(shutdown: &Shutdown, stop: &Shutdown, draining: &str) {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => tracing::info!("{draining}"),
        _ = stop.cancelled() => {}
    }
}
