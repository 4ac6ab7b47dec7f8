//! `GET /health` (the process lives) and `GET /ready` (database reachable and migrated).

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(ready))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Status {
    status: &'static str,
}

/// 200 while the process lives.
#[utoipa::path(get, path = "/health", tag = "health", responses((status = 200, body = Status)))]
async fn health() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// 200 once the database is reachable and migrated, else 503.
#[utoipa::path(get, path = "/ready", tag = "health", responses((status = 200, body = Status), (status = 503)))]
async fn ready(State(state): State<ApiState>) -> Result<Json<Status>, ApiError> {
    if attune_core::db::is_ready(state.pool()).await {
        Ok(Json(Status { status: "ready" }))
    } else {
        Err(ApiError::Unavailable("the database is unreachable or not migrated yet".into()))
    }
}
