//! `GET /api/v1/workers`: registered workers with heartbeat and load.

use attune_core::domain::WorkerStatus;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::pagination::{self, Page};
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerView {
    pub id: i64,
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub runtimes: Vec<String>,
    pub capacity: i32,
    pub running: i32,
    pub status: WorkerStatus,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only workers in this status (active, draining, stopped, lost).
    status: Option<WorkerStatus>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Workers (shared infrastructure: the same list for every tenant), newest first.
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<WorkerView>)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<WorkerView>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let status = q.status.map(WorkerStatus::as_str);
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM attune.worker WHERE $1::text IS NULL OR status = $1"#,
        status
    )
    .fetch_one(state.pool())
    .await?;
    let data = sqlx::query_as!(
        WorkerView,
        r#"SELECT id, name, host, pid, runtimes, capacity, running, status AS "status: WorkerStatus", started_at,
                  heartbeat_at
             FROM attune.worker WHERE $1::text IS NULL OR status = $1 ORDER BY id DESC LIMIT $2 OFFSET $3"#,
        status,
        limit,
        offset
    )
    .fetch_all(state.pool())
    .await?;
    Ok(Json(Page { data, total, limit, offset }))
}
