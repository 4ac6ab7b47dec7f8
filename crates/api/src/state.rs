//! What every handler can reach.

use std::sync::Arc;

use attune_core::wakeup::{Channel, Hint};
use attune_core::Context;

use crate::action_cache::ActionCache;
use crate::ingest::Ingest;
use crate::rate_limit::{AuthThrottle, UserRateLimit};

#[derive(Clone)]
pub struct ApiState {
    pub ctx: Context,
    pub rate_limit: Option<Arc<UserRateLimit>>,
    /// Login and registration attempts per client address and per login.
    pub auth_throttle: Arc<AuthThrottle>,
    /// Wakes the rule engine after an event is committed.
    pub event_hint: Hint,
    /// Wakes the workers (by runner type) after a manual run is committed, admitted.
    pub scheduled_hint: Hint,
    /// Wakes the workers after a cancel request is committed.
    pub cancel_hint: Hint,
    /// Wakes the workflow engine and the change-log readers after a change the API made
    /// itself (an inquiry answered).
    pub change_hint: Hint,
    /// The webhook intake (group commit); pokes `event_hint` after each commit.
    pub ingest: Ingest,
    /// The actions manual runs named, as last read.
    pub actions: Arc<ActionCache>,
}

impl ApiState {
    pub fn new(ctx: Context) -> ApiState {
        let rate_limit = UserRateLimit::new(ctx.config.api.rate_limit_per_second).map(Arc::new);
        let event_hint = ctx.notifier.hint(Channel::Event);
        let ingest = Ingest::start(
            ctx.pool.clone(),
            ctx.config.api.ingest_batch,
            ctx.config.api.ingest_queue,
            event_hint.clone(),
        );
        ApiState {
            rate_limit,
            auth_throttle: Arc::new(AuthThrottle::default()),
            event_hint,
            ingest,
            scheduled_hint: ctx.notifier.hint(Channel::Scheduled),
            cancel_hint: ctx.notifier.hint(Channel::Cancel),
            change_hint: ctx.notifier.hint(Channel::Change),
            actions: Arc::new(ActionCache::default()),
            ctx,
        }
    }

    pub fn pool(&self) -> &sqlx::PgPool {
        &self.ctx.pool
    }
}
