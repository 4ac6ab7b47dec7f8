//! Lost workers: one statement (`sql/workers/reap_lost.sql`) finds workers whose liveness
//! session ended (or, without one, whose heartbeat went stale) and moves on what they
//! held — retried, failed with `worker_lost`, or canceled — closing their running attempts
//! as `lost`. The executor's reaper runs it for every worker; a worker that registers runs
//! it for its own name, so what an earlier incarnation of it left is handled at once.

use std::time::Duration;

use sqlx::PgConnection;

/// A worker silent this long is lost even if its session lives (a hung process): three
/// missed heartbeats.
pub const STALE_AFTER: Duration = Duration::from_secs(15);

/// Which workers a round looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// Only workers of this name (None: all).
    pub name: Option<&'a str>,
    /// Never this worker (the one registering).
    pub except: Option<i64>,
}

/// One round; returns the ids of the executions it moved on.
pub async fn reap(
    conn: &mut PgConnection,
    stale_after: Duration,
    scope: Scope<'_>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_file_scalar!("../../sql/workers/reap_lost.sql", stale_after.as_secs_f64(), scope.name, scope.except)
        .fetch_all(conn)
        .await
}
