//! Attune's REST API (axum).
//!
//! # Layout
//! - [`app`]: the router and its middleware (request ids, body limit, timeouts, JSON
//!   errors for every rejection).
//! - [`console`]: the web console, embedded and served at `/`.
//! - [`state`]: what every handler can reach ([`state::ApiState`]).
//! - [`ingest`]: the webhook intake, which writes concurrent webhooks with one commit.
//! - [`auth`]: tokens, roles, credentials rules and the [`auth::Principal`] extractor
//!   (which applies the per-user [`rate_limit`]; the same module throttles logins and
//!   registrations per client address and per login).
//! - [`routes`]: one module per resource, each registering its handlers with their
//!   OpenAPI description, so `/openapi.json` covers every route.
//! - [`definitions`]: the one CRUD path the definition kinds (packs, actions, triggers,
//!   rules, sensors) share, each kind described by [`definitions::Definition`].
//! - [`db`]: the tenant-confined transaction every tenant request runs in (RLS).
//! - [`pagination`]; [`extract`] (JSON, query and path extractors with JSON rejections, the
//!   client address); [`error`] (the error envelope, and [`error::excerpt`], the one way a
//!   message quotes input); [`openapi`] (the document's frame, and the error answers every
//!   operation can give).
//!
//! Audit entries go through `attune_core::audit`, the log's one writer.
//!
//! [`run`] is the service entry point; [`serve`] runs on a listener the caller bound
//! (tests bind port 0). [`run_with`] and [`serve_with`] also serve routes of another
//! service on the API's port (the notifier's `/ws` in one-process mode), without this
//! crate depending on it.

pub mod action_cache;
pub mod app;
pub mod auth;
pub mod console;
pub mod db;
pub mod definitions;
pub mod error;
pub mod extract;
pub mod ingest;
pub mod openapi;
pub mod pagination;
pub mod rate_limit;
pub mod routes;
pub mod state;

use std::net::SocketAddr;

use attune_core::{Context, Shutdown};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

/// Binds `api.host:api.port` and serves until `shutdown`.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    run_with(ctx, shutdown, Router::new()).await
}

/// As [`run`], serving `extra` routes beside the API's.
pub async fn run_with(ctx: Context, shutdown: Shutdown, extra: Router) -> anyhow::Result<()> {
    let addr = format!("{}:{}", ctx.config.api.host, ctx.config.api.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (api.host/api.port): {e}"))?;
    serve_with(ctx, listener, shutdown, extra).await
}

/// Serves on `listener` until `shutdown`; in-flight requests finish first. Each request
/// knows its socket peer ([`extract::ClientIp`], which the login throttle keys on).
pub async fn serve(ctx: Context, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    serve_with(ctx, listener, shutdown, Router::new()).await
}

/// As [`serve`], serving `extra` routes beside the API's. They get none of the API's
/// middleware (its request timeout would cut long-lived connections); their paths must
/// not be the API's.
pub async fn serve_with(ctx: Context, listener: TcpListener, shutdown: Shutdown, extra: Router) -> anyhow::Result<()> {
    let app = app::router(ctx, shutdown.clone()).merge(extra).into_make_service_with_connect_info::<SocketAddr>();
    // No Nagle: a response written in parts (or right after another) must not wait for
    // the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await?;
    Ok(())
}
