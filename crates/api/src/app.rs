//! The router and its middleware.

use std::time::Duration;

use attune_core::Context;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::routes;

pub fn router(ctx: Context) -> Router {
    let body_limit = ctx.config.api.max_body_bytes;
    let timeout = Duration::from_secs(ctx.config.api.request_timeout_seconds);
    Router::new()
        .merge(routes::health::router())
        .fallback(routes::not_found)
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(TraceLayer::new_for_http())
        .with_state(ctx)
}
