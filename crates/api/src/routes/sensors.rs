//! `/api/v1/sensors`: custom sensors, read-only (they come with packs).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::ApiState;
use crate::auth::{Permission, Principal};
use crate::db;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{self, Page};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(get_one))
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SensorView {
    pub id: i64,
    #[serde(rename = "ref")]
    #[sqlx(rename = "ref")]
    pub sensor_ref: String,
    pub pack: String,
    pub description: Option<String>,
    pub runner_type: String,
    pub entry_point: String,
    pub poll_interval: i32,
    /// Trigger ref.
    pub trigger: String,
    pub config: Value,
    pub enabled: bool,
    pub system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str =
    "SELECT s.id, s.ref, split_part(s.ref, '.', 1) AS pack, s.description, s.runner_type, s.entry_point,
                             s.poll_interval, t.ref AS trigger, s.config, s.enabled, s.tenant_id IS NULL AS system,
                             s.created_at, s.updated_at
                      FROM attune.sensor s JOIN attune.trigger t ON t.id = s.trigger_id";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pack: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Sensors the caller can see, in ref order.
#[utoipa::path(get, path = "/api/v1/sensors", tag = "sensors", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<SensorView>)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<SensorView>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let filter =
        "WHERE (s.tenant_id = $1 OR s.tenant_id IS NULL) AND ($2::text IS NULL OR split_part(s.ref, '.', 1) = $2)";
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM attune.sensor s {filter}"))
        .bind(who.tenant_id)
        .bind(&q.pack)
        .fetch_one(&mut *tx)
        .await?;
    let data = sqlx::query_as(&format!("{SELECT} {filter} ORDER BY s.ref, s.id LIMIT $3 OFFSET $4"))
        .bind(who.tenant_id)
        .bind(&q.pack)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}

/// One sensor by id.
#[utoipa::path(get, path = "/api/v1/sensors/{id}", tag = "sensors", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = SensorView), (status = 404)))]
async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SensorView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_id(SELECT, "s.");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, id, "sensor").await?))
}
