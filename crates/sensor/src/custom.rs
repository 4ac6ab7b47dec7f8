//! Custom sensors: long-running processes from packs whose JSON lines become events.
//!
//! A sensor runs while it is enabled and its trigger has an enabled rule. One process per
//! sensor across all sensor services: a service runs a sensor only while it holds the
//! sensor's lease in `attune.sensor_lease` (taken or renewed every few seconds, expiring
//! after [`LEASE`] if its holder dies). The process gets `{"config", "poll_interval",
//! "trigger"}` on stdin (and `ATTUNE_POLL_INTERVAL`), writes one JSON object per line to
//! stdout — each becomes an event of its trigger — and its stderr goes to this service's
//! log under the sensor's ref. When it exits it is restarted with a growing backoff.
//!
//! A sensor runs sandboxed like an action ([`attune_core::child::Sandbox`], the worker's
//! `sandbox` settings): as an unprivileged user, with its pack's directory read-only, the
//! `sandbox.bind` folders, network, the limits, and a scratch folder of its own (its
//! working directory, removed when the process ends).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Duration;

use attune_core::child::{limit_exceeded, SandboxConfig};
use attune_core::domain::RunnerType;
use attune_core::wakeup::{Channel, Hint};
use attune_core::{Context, Shutdown};
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// How long a lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often leases are renewed and the wanted set re-read.
const TICK: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One row of `wanted_sensors.sql`.
#[derive(Clone, Debug)]
struct SensorRow {
    id: i64,
    tenant_id: Option<i64>,
    sensor_ref: String,
    runner_type: RunnerType,
    entry_point: String,
    poll_interval: i32,
    config: Value,
    trigger_id: i64,
    trigger_ref: String,
    pack_path: Option<String>,
    updated_at: DateTime<Utc>,
}

struct Running {
    updated_at: DateTime<Utc>,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let pool = ctx.pool.clone();
    let host =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().to_string()).unwrap_or_else(|_| "localhost".into());
    // Unique even for containers sharing a hostname and a pid.
    let holder = format!("{host}/{}/{:016x}", std::process::id(), rand::random::<u64>());
    let definitions = ctx.notifier.subscribe(&[Channel::Rule, Channel::Timer]).await?;
    let events = ctx.notifier.hint(Channel::Event);
    let mut running: HashMap<i64, Running> = HashMap::new();
    let mut renewed = std::time::Instant::now();
    while !shutdown.is_cancelled() {
        match supervise(&pool, &holder, &events, &mut running, &ctx.config.sandbox).await {
            Ok(()) => renewed = std::time::Instant::now(),
            Err(e) => {
                tracing::error!(error = %e, "sensor supervision failed");
                // Our leases may lapse and another service take the sensors over: stop
                // ours before that can happen, so there are never two.
                if renewed.elapsed() > LEASE / 2 {
                    for r in running.values() {
                        r.stop.cancel();
                    }
                }
            }
        }
        tokio::select! {
            _ = definitions.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    // Stop every process and wait for them before giving the leases back.
    for r in running.values() {
        r.stop.cancel();
    }
    for (_, r) in running.drain() {
        let _ = tokio::time::timeout(Duration::from_secs(10), r.task).await;
    }
    let _ = sqlx::query!("DELETE FROM attune.sensor_lease WHERE holder = $1", holder).execute(&pool).await;
    Ok(())
}

/// Starts the sensors this service should run and holds the lease of, stops the others.
/// A stopping sensor keeps its lease (and its place) until its process has exited, so an
/// old and a new process never overlap.
async fn supervise(
    pool: &PgPool,
    holder: &str,
    events: &Hint,
    running: &mut HashMap<i64, Running>,
    sandbox: &SandboxConfig,
) -> Result<(), sqlx::Error> {
    let wanted = sqlx::query_file_as!(SensorRow, "../../sql/sensor/wanted_sensors.sql").fetch_all(pool).await?;
    let mut ids: Vec<i64> = wanted.iter().map(|s| s.id).collect();
    let stopping: Vec<i64> = running.keys().copied().filter(|id| !ids.contains(id)).collect();
    ids.extend(stopping);
    let held = sqlx::query_file_scalar!("../../sql/sensor/take_leases.sql", holder, &ids, LEASE.as_secs_f64())
        .fetch_all(pool)
        .await?;
    let keep: HashMap<i64, &SensorRow> = wanted.iter().filter(|s| held.contains(&s.id)).map(|s| (s.id, s)).collect();
    for (id, r) in running.iter() {
        if keep.get(id).is_none_or(|s| s.updated_at != r.updated_at) {
            r.stop.cancel();
        }
    }
    running.retain(|_, r| !(r.stop.is_cancelled() && r.task.is_finished()));
    // Leases of sensors neither wanted nor still stopping go back at once.
    let still: Vec<i64> = running.keys().copied().chain(keep.keys().copied()).collect();
    sqlx::query!("DELETE FROM attune.sensor_lease WHERE holder = $1 AND NOT (sensor_id = ANY($2))", holder, &still)
        .execute(pool)
        .await?;
    for (id, sensor) in keep {
        if running.contains_key(&id) {
            continue;
        }
        let stop = Shutdown::new();
        tracing::info!(sensor = %sensor.sensor_ref, "starting sensor");
        let task =
            tokio::spawn(keep_running(pool.clone(), (*sensor).clone(), events.clone(), stop.clone(), sandbox.clone()));
        running.insert(id, Running { updated_at: sensor.updated_at, stop, task });
    }
    Ok(())
}

/// Runs the sensor's process until `stop`, restarting it with a growing backoff.
async fn keep_running(pool: PgPool, sensor: SensorRow, events: Hint, stop: Shutdown, sandbox: SandboxConfig) {
    let mut backoff = Duration::from_secs(1);
    while !stop.is_cancelled() {
        let started = std::time::Instant::now();
        match run_once(&pool, &sensor, &events, &stop, &sandbox).await {
            Ok(status) => tracing::warn!(sensor = %sensor.sensor_ref, %status, "sensor exited"),
            Err(e) => tracing::error!(sensor = %sensor.sensor_ref, error = %e, "sensor could not run"),
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_secs(1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    tracing::info!(sensor = %sensor.sensor_ref, "sensor stopped");
}

async fn run_once(
    pool: &PgPool,
    sensor: &SensorRow,
    events: &Hint,
    stop: &Shutdown,
    sandbox: &SandboxConfig,
) -> Result<String, String> {
    let pack = sensor.pack_path.as_ref().map(PathBuf::from).ok_or("its pack has no directory")?;
    let dir = pack.join("sensors");
    let program = dir.join(&sensor.entry_point);
    let (interpreter, args) = match sensor.runner_type {
        RunnerType::Python => ("python3", vec![OsStr::new("-u"), program.as_os_str()]),
        RunnerType::Node => ("node", vec![program.as_os_str()]),
        _ => ("/bin/sh", vec![program.as_os_str()]),
    };
    // Sandboxed (unless `sandbox.mode = none`), in a PID namespace of its own: the sensor
    // and all it started die with this service (see `attune_core::child`). Spawned from
    // this async task, not from `spawn_blocking`: the death signal follows the thread
    // that forks. Dropped at the end of this function: the scratch folder goes with it.
    let mut sandbox = attune_core::child::Sandbox::prepare(sandbox, true, std::slice::from_ref(&pack))
        .map_err(|e| format!("cannot sandbox it, so it did not start: {e}"))?;
    let mut cmd = sandbox.command(interpreter, args, &dir);
    cmd.env("ATTUNE_POLL_INTERVAL", sensor.poll_interval.to_string()).env("ATTUNE_SENSOR_REF", &sensor.sensor_ref);
    let mut child = sandbox.spawn(&mut cmd).map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let doc = json!({"config": sensor.config, "poll_interval": sensor.poll_interval, "trigger": sensor.trigger_ref});
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(doc.to_string().as_bytes()).await;
        let _ = stdin.shutdown().await;
    }
    let mut out = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut err = BufReader::new(child.stderr.take().expect("piped")).lines();
    let sensor_ref = sensor.sensor_ref.clone();
    // Its last lines, to name a resource limit it hit.
    let last_lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr_task = tokio::spawn({
        let last_lines = last_lines.clone();
        async move {
            while let Ok(Some(line)) = err.next_line().await {
                tracing::info!(sensor = %sensor_ref, "{line}");
                let mut last = last_lines.lock().expect("not poisoned");
                if last.len() > 4000 {
                    last.drain(..2000);
                }
                last.push_str(&line);
                last.push('\n');
            }
        }
    });
    let result = loop {
        tokio::select! {
            line = out.next_line() => match line {
                Ok(Some(line)) => emit(pool, sensor, events, &line).await,
                // stdout closed or unreadable: the sensor is done for, whether or not the
                // process has exited yet.
                Ok(None) | Err(_) => {
                    let status = tokio::select! {
                        status = child.wait() => status.map_err(|e| e.to_string()).map(|s| {
                            let exceeded = sandbox.limits().and_then(|limits| {
                                limit_exceeded(limits, s.code(), &last_lines.lock().expect("not poisoned"))
                            });
                            match exceeded {
                                Some(limit) => format!("{s}; the sensor {limit}"),
                                None => s.to_string(),
                            }
                        }),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {
                            sandbox.signal(Signal::SIGTERM);
                            Ok("closed its output; stopped".to_string())
                        }
                        _ = stop.cancelled() => Ok("stopped".to_string()),
                    };
                    break status;
                }
            },
            _ = stop.cancelled() => {
                sandbox.signal(Signal::SIGTERM);
                let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                    Ok(s) => s.map(|s| s.to_string()).map_err(|e| e.to_string()),
                    Err(_) => Ok("killed".to_string()),
                };
                break status;
            }
        }
    };
    // Whatever is left of it goes with it.
    sandbox.signal(Signal::SIGKILL);
    let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
    stderr_task.abort();
    result
}

/// One stdout line: a JSON object becomes an event; anything else is logged and skipped.
async fn emit(pool: &PgPool, sensor: &SensorRow, events: &Hint, line: &str) {
    let payload = match serde_json::from_str::<Value>(line.trim()) {
        Ok(v @ Value::Object(_)) if !line.contains("\\u0000") => v,
        _ => {
            tracing::warn!(sensor = %sensor.sensor_ref, line, "sensor wrote a line that is not a JSON object; skipped");
            return;
        }
    };
    let inserted = sqlx::query_file_scalar!(
        "../../sql/event/insert.sql",
        sensor.tenant_id,
        sensor.trigger_id,
        sensor.trigger_ref,
        payload,
        "sensor",
    )
    .fetch_optional(pool)
    .await;
    match inserted {
        Ok(Some(_)) => {
            attune_core::metrics::events_created("sensor", 1);
            events.poke()
        }
        Ok(None) => {
            tracing::info!(sensor = %sensor.sensor_ref, "the sensor's trigger was deleted; its event is dropped")
        }
        Err(e) => tracing::error!(sensor = %sensor.sensor_ref, error = %e, "cannot store a sensor event"),
    }
}
