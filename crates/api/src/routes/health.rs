//! `GET /health` (the process lives) and `GET /ready` (database reachable and migrated;
//! with the RabbitMQ bridge's lag when it has a cursor, for information only).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::ApiState;

/// The bridge's `consumer_cursor` row (attune_bridge::leader::CURSOR_NAME; read from the
/// table, so the API does not depend on the bridge).
const BRIDGE_CURSOR: &str = "bridge";

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    status: &'static str,
    /// The RabbitMQ bridge's progress; absent when no bridge ever published.
    #[serde(skip_serializing_if = "Option::is_none")]
    bridge: Option<BridgeLag>,
}

/// How far the RabbitMQ bridge is behind the change log.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BridgeLag {
    /// The last change-log id RabbitMQ confirmed.
    cursor: i64,
    /// The newest change-log id.
    newest_id: i64,
    /// Rows not yet published (counted up to 100,001: more reads as 100001).
    lag: i64,
    /// When the cursor last moved.
    cursor_updated_at: DateTime<Utc>,
}

/// 200 while the process lives.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Status)))]
async fn health() -> Json<Status> {
    Json(Status { status: "ok", bridge: None })
}

/// 200 once the database is reachable and migrated, else 503. The bridge's lag is
/// informational: it never makes the answer 503.
#[utoipa::path(get, path = "/ready", tag = "health", responses((status = 200, body = Status), (status = 503)))]
async fn ready(State(state): State<ApiState>) -> Result<Json<Status>, ApiError> {
    if attune_core::db::is_ready(state.pool()).await {
        Ok(Json(Status { status: "ready", bridge: bridge_lag(&state).await }))
    } else {
        Err(ApiError::Unavailable("the database is unreachable or not migrated yet".into()))
    }
}

async fn bridge_lag(state: &ApiState) -> Option<BridgeLag> {
    let row = sqlx::query_file!("../../sql/bridge/lag.sql", BRIDGE_CURSOR).fetch_optional(state.pool()).await;
    match row {
        Ok(row) => row.map(|r| BridgeLag {
            cursor: r.cursor,
            newest_id: r.newest_id,
            lag: r.behind,
            cursor_updated_at: r.updated_at,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "/ready: cannot read the bridge's cursor");
            None
        }
    }
}
