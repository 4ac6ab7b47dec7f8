//! Cancels the executions of this worker that someone asked to cancel (`canceling`): woken
//! by the `cancel` hint, and polling every second as the safety net — or polling only,
//! when the process cannot listen for hints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attune_core::wakeup::Channel;
use attune_core::{Context, Shutdown};
use sqlx::PgPool;

/// The cancel switch of every execution running here, by execution id.
pub type Cancels = Arc<Mutex<HashMap<i64, Shutdown>>>;

/// How often cancel requests are looked for without a hint.
const POLL: Duration = Duration::from_secs(1);

/// Watches until `stop`.
pub async fn run(ctx: Context, worker_id: i64, cancels: Cancels, stop: Shutdown) {
    let wakeup = match ctx.notifier.subscribe(&[Channel::Cancel]).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for cancel requests; polling only");
            None
        }
    };
    while !stop.is_cancelled() {
        cancel_requested(&ctx.pool, worker_id, &cancels).await;
        match &wakeup {
            Some(wakeup) => wakeup.wait(POLL, &stop).await,
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.cancelled() => {}
                }
            }
        }
    }
}

/// Cancels each execution running here that is `canceling`.
async fn cancel_requested(pool: &PgPool, worker_id: i64, cancels: &Mutex<HashMap<i64, Shutdown>>) {
    if cancels.lock().expect("cancels lock").is_empty() {
        return;
    }
    let ids = match sqlx::query_scalar!(
        "SELECT id FROM attune.execution WHERE worker_id = $1 AND status = 'canceling'",
        worker_id
    )
    .fetch_all(pool)
    .await
    {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read cancel requests");
            return;
        }
    };
    let cancels = cancels.lock().expect("cancels lock");
    for id in ids {
        if let Some(token) = cancels.get(&id) {
            token.cancel();
        }
    }
}
