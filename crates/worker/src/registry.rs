//! The worker's registration, its liveness session and its heartbeat.
//!
//! Every start registers a new row (an incarnation: a fresh id and `instance` beside the
//! human-readable name), and takes, on a connection of its own kept for the worker's whole
//! life, a session-level advisory lock keyed by that id. The lock *is* the worker's
//! liveness: when the process dies its session ends and the lock goes with it, and the
//! reaper (`attune_core::lost_workers`) sees that within a second. The heartbeat runs on
//! the same connection, so the session is never idle long; PostgreSQL is told to end it
//! when it is (`idle_session_timeout`, a hung process) or when the peer stops answering
//! (TCP keepalives, `tcp_user_timeout`), which releases the lock too. Heartbeats stay the
//! fallback the reaper also reads. Heartbeats go to the narrow `worker` row, never to every
//! execution.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use attune_core::domain::RunnerType;
use attune_core::lost_workers::{self, Scope, STALE_AFTER};
use attune_core::Shutdown;
use sqlx::{Connection, PgConnection, PgPool};

/// How often a worker says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

static SEQUENCE: AtomicU32 = AtomicU32::new(1);

#[derive(Debug, Clone)]
pub struct Registration {
    pub id: i64,
    /// `host/pid/n`, shown as an execution's `worker`; several incarnations may share it.
    pub name: String,
    /// This incarnation's unique id.
    pub instance: String,
}

/// The connection whose session is the worker's liveness (see the module doc).
pub struct Liveness {
    conn: PgConnection,
}

/// Registers this worker as running `runtimes` with `capacity` process slots, takes its
/// liveness lock, and reaps what earlier incarnations of the same name left running.
pub async fn register(
    pool: &PgPool,
    runtimes: &[RunnerType],
    capacity: usize,
) -> Result<(Registration, Liveness), sqlx::Error> {
    let host =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().to_string()).unwrap_or_else(|_| "localhost".into());
    let pid = std::process::id();
    let name = format!("{host}/{pid}/{}", SEQUENCE.fetch_add(1, Ordering::Relaxed));
    let runtimes: Vec<String> = runtimes.iter().map(|r| r.as_str().to_string()).collect();

    // This session must live exactly as long as the worker.
    let mut conn = attune_core::db::session_connection(pool).await?;
    // A hung worker (no heartbeat on this session for 30 s) loses its session, and so its
    // lock. PostgreSQL 14+; older servers keep only the heartbeat fallback.
    let idle = format!("{}s", HEARTBEAT.as_secs() * 6);
    if let Err(e) = sqlx::query!(r#"SELECT set_config('idle_session_timeout', $1, false) AS "set""#, idle)
        .fetch_one(&mut conn)
        .await
    {
        tracing::info!(error = %e, "no idle_session_timeout on this server; a hung worker is found by its heartbeat");
    }

    // The row becomes visible with the commit, by which time its lock is held: the
    // reaper can never see this worker without it.
    let mut tx = conn.begin().await?;
    let row = sqlx::query!(
        r#"INSERT INTO attune.worker (name, host, pid, runtimes, capacity, session_lock)
           VALUES ($1, $2, $3, $4, $5, true)
           RETURNING id, instance::text AS "instance!""#,
        &name,
        &host,
        pid as i32,
        &runtimes,
        capacity as i32,
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!("SELECT pg_advisory_lock(attune.worker_lock_key($1))", row.id).execute(&mut *tx).await?;
    tx.commit().await?;

    let registration = Registration { id: row.id, name, instance: row.instance };
    let scope = Scope { name: Some(&registration.name), except: Some(registration.id) };
    let reaped = match pool.acquire().await {
        Ok(mut conn) => lost_workers::reap(&mut conn, STALE_AFTER, scope).await,
        Err(e) => Err(e),
    };
    match reaped {
        Ok(moved) if !moved.is_empty() => tracing::warn!(
            worker = %registration.name,
            executions = moved.len(),
            "an earlier incarnation of this worker was lost; its executions were moved on"
        ),
        Ok(_) => {}
        // The reaper will do it within a second.
        Err(e) => tracing::warn!(error = %e, "could not reap earlier incarnations"),
    }
    Ok((registration, Liveness { conn }))
}

/// Beats on the liveness session until `stop`, reporting how many executions run. When
/// the session fails, the worker is no longer alive to the others (its lock went with
/// the session and the reaper moves its executions on): `lost` is cancelled, and the
/// worker stops its actions and ends.
pub fn spawn_heartbeat(
    liveness: Liveness,
    id: i64,
    running: Arc<AtomicU32>,
    stop: Shutdown,
    lost: Shutdown,
) -> tokio::task::JoinHandle<()> {
    let Liveness { mut conn } = liveness;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
            // A beat that hangs (a half-open connection) is a lost session too: the server
            // ends it within `tcp_user_timeout`, and the reaper hands the work on.
            let beat = tokio::time::timeout(
                HEARTBEAT,
                sqlx::query!(
                    "UPDATE attune.worker SET heartbeat_at = now(), running = $2
                      WHERE id = $1 AND status IN ('active', 'draining')",
                    id,
                    running.load(Ordering::Relaxed) as i32,
                )
                .execute(&mut conn),
            )
            .await;
            let why = match beat {
                Ok(Ok(done)) if done.rows_affected() == 1 => continue,
                // The reaper judged this worker lost (a stalled heartbeat): its executions are
                // being retried elsewhere, so its own must stop.
                Ok(Ok(_)) => "the reaper marked this worker lost".to_string(),
                Ok(Err(e)) => format!("the liveness session failed: {e}"),
                Err(_) => format!("a heartbeat took longer than {} s", HEARTBEAT.as_secs()),
            };
            tracing::error!(reason = %why, "this worker is lost to the others; stopping its actions");
            lost.cancel();
            return;
        }
        // Ending the session releases the lock: deregister first (the caller does).
        let _ = conn.close().await;
    })
}

pub async fn deregister(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE attune.worker SET status = 'stopped', stopped_at = now(), running = 0
          WHERE id = $1 AND status IN ('active', 'draining')",
        id
    )
    .execute(pool)
    .await?;
    Ok(())
}
