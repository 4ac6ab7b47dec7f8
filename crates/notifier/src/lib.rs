//! Attune notifier: the `/ws` WebSocket stream of the change log (API.md "WebSocket
//! stream", docs/streaming.md). Every change the services make is appended to
//! `attune.change_log` in its transaction; this crate tails that log once per process and
//! pushes each change to the subscribed sockets of its tenant.
//!
//! # Layout
//! - [`hub`]: the one change-log reader ([`Hub::run`]) and the fan-out to sockets through
//!   bounded queues (a socket that falls behind is closed, never waited for).
//! - [`socket`]: one connection: authentication, subscriptions, replay with `since`, the
//!   live queue, keep-alive, closing with a code.
//! - [`auth`]: the socket's caller from its access token (its tenant is the token's).
//! - [`protocol`]: the client messages, the control messages and the close codes.
//!
//! # Where `/ws` is served
//! In one process with the API (`attune up`, `attune serve api,notifier`) the binary builds
//! a [`Hub`], gives its [`Hub::router`] to the API (served on the API's port) and runs
//! [`Hub::run`] as the notifier service. Alone (`attune serve notifier`), [`run`] serves
//! `/ws` (and `/health`) on `notifier.port`.

pub mod auth;
pub mod hub;
pub mod protocol;
pub mod socket;

use anyhow::Context as _;
use attune_core::service::stopping_others;
use attune_core::{Context, Shutdown};
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

pub use hub::Hub;

impl Hub {
    /// `GET /ws` on this hub, to serve on any port (the API's, or the notifier's own).
    pub fn router(&self) -> Router {
        Router::new().route("/ws", get(socket::upgrade)).with_state(self.clone())
    }
}

/// The notifier on its own: binds `api.host:notifier.port` and serves `/ws` until `shutdown`.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let addr = format!("{}:{}", ctx.config.api.host, ctx.config.notifier.port);
    let listener = TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (api.host/notifier.port, ATTUNE_NOTIFIER_PORT)"))?;
    tracing::info!(addr = %addr, "notifier: serving /ws");
    serve(ctx, listener, shutdown).await
}

/// The notifier on its own, on a listener the caller bound: the hub's reader and `/ws`
/// (plus `/health`). At `shutdown` the sockets are closed (1001) and it returns.
pub async fn serve(ctx: Context, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let hub = Hub::new(ctx);
    let stop = shutdown.child_token();
    let app = hub.router().route("/health", get(|| async { StatusCode::OK }));
    let server = async {
        // No Nagle: a change written right after another must not wait for the client's
        // delayed ACK (tens of ms).
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app).with_graceful_shutdown(stop.clone().cancelled_owned()).await?;
        Ok(())
    };
    let (served, read) = tokio::join!(stopping_others(server, &stop), stopping_others(hub.run(stop.clone()), &stop));
    served.and(read)
}
