//! The worker's registration and heartbeat. Heartbeats go to the narrow `worker` row,
//! never to every execution.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attune_core::domain::RunnerType;
use attune_core::Shutdown;
use sqlx::PgPool;

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

static SEQUENCE: AtomicU32 = AtomicU32::new(1);

#[derive(Debug, Clone)]
pub struct Registration {
    pub id: i64,
    /// `host/pid/n`, shown as an execution's `worker`.
    pub name: String,
}

/// Registers this worker as running `runtimes` with `capacity` process slots.
pub async fn register(pool: &PgPool, runtimes: &[RunnerType], capacity: usize) -> Result<Registration, sqlx::Error> {
    let host =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().to_string()).unwrap_or_else(|_| "localhost".into());
    let pid = std::process::id();
    let name = format!("{host}/{pid}/{}", SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let runtimes: Vec<String> = runtimes.iter().map(|r| r.as_str().to_string()).collect();
    let id = sqlx::query_scalar!(
        "INSERT INTO attune.worker (name, host, pid, runtimes, capacity) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET status = 'active', started_at = now(), heartbeat_at = now(), stopped_at = NULL,
                                          runtimes = EXCLUDED.runtimes, capacity = EXCLUDED.capacity
         RETURNING id",
        &name,
        &host,
        pid as i32,
        &runtimes,
        capacity as i32,
    )
    .fetch_one(pool)
    .await?;
    Ok(Registration { id, name })
}

/// Beats until `stop`, reporting how many executions run.
pub fn spawn_heartbeat(pool: PgPool, id: i64, running: Arc<AtomicU32>, stop: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
            let result = sqlx::query!(
                "UPDATE attune.worker SET heartbeat_at = now(), running = $2 WHERE id = $1",
                id,
                running.load(Ordering::Relaxed) as i32,
            )
            .execute(&pool)
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "heartbeat failed");
            }
        }
    })
}

pub async fn deregister(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE attune.worker SET status = 'stopped', stopped_at = now(), running = 0 WHERE id = $1", id)
        .execute(pool)
        .await?;
    Ok(())
}
