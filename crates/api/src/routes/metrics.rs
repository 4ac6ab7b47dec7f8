//! `GET /metrics`: the process's metrics in Prometheus text format (no authentication,
//! like `/health`: the figures are counts and depths without tenant, names or payloads).
//! Each scrape first refreshes the gauges that are cheaper to read than to maintain: the
//! work tables' depth and oldest-waiting age (sql/metrics/queue_depth.sql) and the pool.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::ApiState;

/// The Prometheus text exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Metrics in Prometheus text format (docs/operations.md, "Metrics", lists them).
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let pool = state.pool();
    attune_core::metrics::pool(pool.size(), pool.num_idle());
    match sqlx::query_file!("../../sql/metrics/queue_depth.sql").fetch_all(pool).await {
        Ok(rows) => {
            for r in rows {
                attune_core::metrics::queue(&r.queue, r.depth, r.oldest_age_seconds);
            }
        }
        // The rest of the metrics are still worth serving; the queue gauges keep their
        // last values.
        Err(e) => tracing::warn!(error = %e, "/metrics: cannot read the queue depths"),
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], attune_core::metrics::render())
}
