//! The shape every service shares: `run(ctx, shutdown) -> Result<()>`.
//!
//! A service stops *taking* work when `shutdown` is cancelled, drains what it holds, and
//! returns. The `attune` binary runs any subset of services against one [`Context`].

use std::sync::Arc;

use sqlx::PgPool;

use crate::bootstrap::Keys;
use crate::Config;

/// Cancelled once, when the process is asked to stop.
pub type Shutdown = tokio_util::sync::CancellationToken;

/// What a service needs: settings, the pool, and the process's keys.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub keys: Arc<Keys>,
}

impl Context {
    pub fn new(config: Config, pool: PgPool, keys: Keys) -> Self {
        Context { config: Arc::new(config), pool, keys: Arc::new(keys) }
    }
}
