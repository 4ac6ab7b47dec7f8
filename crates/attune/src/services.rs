//! Which services a process runs, and running them side by side until shutdown.

use std::str::FromStr;

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

/// Runs `services` until `shutdown` is cancelled or one of them fails (which cancels
/// the rest). Returns the first failure.
pub async fn supervise(
    ctx: Context,
    services: &[Service],
    api_listener: Option<tokio::net::TcpListener>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    let mut api_listener = api_listener;
    for &service in services {
        let ctx = ctx.clone();
        let token = shutdown.clone();
        let listener = if service == Service::Api { api_listener.take() } else { None };
        set.spawn(async move {
            let result = match service {
                Service::Api => match listener {
                    Some(l) => attune_api::serve(ctx, l, token).await,
                    None => attune_api::run(ctx, token).await,
                },
                Service::Executor => attune_executor::run(ctx, token).await,
                Service::Worker => attune_worker::run(ctx, token).await,
                Service::Sensor => attune_sensor::run(ctx, token).await,
                Service::Notifier => attune_notifier::run(ctx, token).await,
                Service::Bridge => attune_bridge::run(ctx, token).await,
            };
            (service, result)
        });
    }
    let mut first_error = None;
    while let Some(joined) = set.join_next().await {
        let (service, result) = match joined {
            Ok(r) => r,
            Err(e) => {
                shutdown.cancel();
                first_error.get_or_insert(anyhow::anyhow!("a service panicked: {e}"));
                continue;
            }
        };
        match result {
            Ok(()) if !shutdown.is_cancelled() => {
                tracing::warn!(service = service.name(), "service returned before shutdown; stopping the others");
                shutdown.cancel();
            }
            Ok(()) => tracing::info!(service = service.name(), "service stopped"),
            Err(e) => {
                tracing::error!(
                    service = service.name(),
                    error = format!("{e:#}"),
                    "service failed; stopping the others"
                );
                shutdown.cancel();
                first_error.get_or_insert(e.context(format!("service {} failed", service.name())));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
