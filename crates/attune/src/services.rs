//! Which services a process runs, and running them side by side until shutdown and
//! through their drain.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use attune_core::{Context, Shutdown};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    Api,
    Executor,
    Worker,
    Sensor,
    Notifier,
    Bridge,
}

impl Service {
    pub const ALL: [Service; 6] =
        [Service::Api, Service::Executor, Service::Worker, Service::Sensor, Service::Notifier, Service::Bridge];

    pub fn name(self) -> &'static str {
        match self {
            Service::Api => "api",
            Service::Executor => "executor",
            Service::Worker => "worker",
            Service::Sensor => "sensor",
            Service::Notifier => "notifier",
            Service::Bridge => "bridge",
        }
    }
}

impl FromStr for Service {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <Service as clap::ValueEnum>::from_str(s, true)
    }
}

/// While draining, how often the services not yet returned are named.
const DRAIN_REPORT: Duration = Duration::from_secs(10);

/// Runs `services` until `shutdown` is cancelled or one of them fails (which cancels
/// the rest), then waits for every one to drain and return — however long that takes (a
/// worker waits for its running executions); a second signal is the way out (see
/// [`crate::startup`]). Returns the first failure.
pub async fn supervise(
    ctx: Context,
    services: &[Service],
    api_listener: Option<tokio::net::TcpListener>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, Service> = HashMap::new();
    let mut api_listener = api_listener;
    let hub = shared_hub(&ctx, services);
    for &service in services {
        let ctx = ctx.clone();
        let token = shutdown.clone();
        let listener = if service == Service::Api { api_listener.take() } else { None };
        let hub = hub.clone();
        let task = set.spawn(async move {
            match service {
                Service::Api => {
                    let extra = hub.map(|h| h.router()).unwrap_or_default();
                    match listener {
                        Some(l) => attune_api::serve_with(ctx, l, token, extra).await,
                        None => attune_api::run_with(ctx, token, extra).await,
                    }
                }
                Service::Executor => attune_executor::run(ctx, token).await,
                Service::Worker => attune_worker::run(ctx, token).await,
                Service::Sensor => attune_sensor::run(ctx, token).await,
                Service::Notifier => match hub {
                    Some(hub) => hub.run(token).await,
                    None => attune_notifier::run(ctx, token).await,
                },
                Service::Bridge => attune_bridge::run(ctx, token).await,
            }
        });
        running.insert(task.id(), service);
    }
    let mut first_error = None;
    loop {
        let joined = tokio::select! {
            joined = set.join_next_with_id() => match joined {
                Some(joined) => joined,
                None => break,
            },
            // Restarted at every service's return: a report after a quiet DRAIN_REPORT.
            () = report_after(&shutdown, DRAIN_REPORT) => {
                let mut waiting: Vec<&str> = running.values().map(|s| s.name()).collect();
                waiting.sort_unstable();
                tracing::info!(waiting_for = waiting.join(","), "still draining (a second SIGTERM or Ctrl-C stops at once)");
                continue;
            }
        };
        let (service, result) = match joined {
            Ok((id, result)) => (running.remove(&id), result),
            Err(e) => {
                let service = running.remove(&e.id());
                shutdown.cancel();
                let name = service.map_or("?", |s| s.name());
                tracing::error!(service = name, error = %e, "service panicked; stopping the others");
                first_error.get_or_insert(anyhow::anyhow!("service {name} panicked: {e}"));
                continue;
            }
        };
        let name = service.map_or("?", |s| s.name());
        match result {
            Ok(()) if !shutdown.is_cancelled() => {
                tracing::warn!(service = name, "service returned before shutdown; stopping the others");
                shutdown.cancel();
            }
            Ok(()) => tracing::info!(service = name, "service stopped"),
            Err(e) => {
                tracing::error!(service = name, error = format!("{e:#}"), "service failed; stopping the others");
                shutdown.cancel();
                first_error.get_or_insert(e.context(format!("service {name} failed")));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// With the API and the notifier in one process, `/ws` is served on the API's port (API.md):
/// the notifier service is then the hub's reader, and the API serves its router.
fn shared_hub(ctx: &Context, services: &[Service]) -> Option<attune_notifier::Hub> {
    let both = services.contains(&Service::Api) && services.contains(&Service::Notifier);
    both.then(|| attune_notifier::Hub::new(ctx.clone()))
}

/// Completes `after` from now once `shutdown` is cancelled (never before).
async fn report_after(shutdown: &Shutdown, after: Duration) {
    shutdown.cancelled().await;
    tokio::time::sleep(after).await;
}
