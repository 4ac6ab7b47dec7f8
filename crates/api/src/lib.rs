//! Attune's REST API (axum).
//!
//! # Layout
//! - [`app`]: builds the router and its middleware from a [`attune_core::Context`].
//! - [`routes`]: one module per resource (`health` so far; auth, definitions, events,
//!   executions, inquiries and the datastore join with their issues).
//! - [`error`]: the one place where errors become HTTP statuses and JSON bodies.
//!
//! [`run`] is the service entry point; [`serve`] runs on a listener the caller bound
//! (tests bind port 0).

pub mod app;
pub mod error;
pub mod routes;

use attune_core::{Context, Shutdown};
use tokio::net::TcpListener;

/// Binds `api.host:api.port` and serves until `shutdown`.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let addr = format!("{}:{}", ctx.config.api.host, ctx.config.api.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (api.host/api.port): {e}"))?;
    serve(ctx, listener, shutdown).await
}

/// Serves on `listener` until `shutdown`; in-flight requests finish first.
pub async fn serve(ctx: Context, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let app = app::router(ctx);
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await?;
    Ok(())
}
