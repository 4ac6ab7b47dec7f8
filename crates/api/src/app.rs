//! The router and its middleware.

use std::sync::Arc;
use std::time::Duration;

use attune_core::{Context, Shutdown};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::ApiState;
use crate::{error, openapi, routes};

/// Every documented route, with its OpenAPI description (error answers completed by
/// [`openapi::document_errors`]). A route exists only if it is registered here through
/// `routes!`, so the document cannot miss one.
pub fn api_routes() -> OpenApiRouter<ApiState> {
    let mut routes = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::metrics::router())
        .merge(routes::auth::router())
        .merge(routes::users::router())
        .merge(routes::packs::router())
        .merge(routes::actions::router())
        .merge(routes::triggers::router())
        .merge(routes::rules::router())
        .merge(routes::sensors::router())
        .merge(routes::webhooks::router())
        .merge(routes::events::router())
        .merge(routes::executions::router())
        .merge(routes::inquiries::router())
        .merge(routes::datastore::router())
        .merge(routes::audit::router())
        .merge(routes::workers::router());
    openapi::document_errors(routes.get_openapi_mut());
    routes
}

pub fn router(ctx: Context, shutdown: Shutdown) -> Router {
    let state = ApiState::new(ctx);
    let limits = BodyLimits {
        body: state.ctx.config.api.max_body_bytes as u64,
        archive: state.ctx.config.packs.max_upload_bytes,
    };
    let timeout = Duration::from_secs(state.ctx.config.api.request_timeout_seconds);
    let (limit, throttle) = (state.rate_limit.clone(), state.auth_throttle.clone());
    // Keep the limiters' memory bounded to recently active users and clients.
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {
                    if let Some(limit) = &limit {
                        limit.forget_idle();
                    }
                    throttle.forget_idle();
                }
                _ = shutdown.cancelled() => break,
            }
        }
    });
    let (api, doc) = api_routes().split_for_parts();
    let doc = Arc::new(doc);
    let request_id = HeaderName::from_static("x-request-id");
    api.route("/openapi.json", get(move || async move { Json(doc.as_ref().clone()) }))
        .merge(crate::console::router())
        .fallback(routes::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(move |req, next| limit_body(limits, req, next)))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The largest request bodies taken.
#[derive(Debug, Clone, Copy)]
struct BodyLimits {
    /// `api.max_body_bytes`: every body but a pack archive.
    body: u64,
    /// `packs.max_upload_bytes`: the routes that may take a pack archive
    /// ([`routes::packs::delivery::takes_archive`]).
    archive: u64,
}

/// Caps the request body: a declared length over the cap is refused at once, a longer
/// body fails when read (axum's extractors and the archive reader answer 413).
async fn limit_body(limits: BodyLimits, req: Request, next: Next) -> Response {
    let archive = routes::packs::delivery::takes_archive(req.method(), req.uri().path());
    let limit = if archive { limits.archive } else { limits.body };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return match archive {
            true => routes::packs::delivery::archive_too_large(limit).into_response(),
            false => error::ApiError::PayloadTooLarge.into_response(),
        };
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    next.run(req.map(|body| Body::new(http_body_util::Limited::new(body, limit)))).await
}
