//! `/api/v1/events` and `/api/v1/enforcements`: what fired, and which rules it matched.

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
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(list_enforcements))
        .routes(routes!(get_enforcement))
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EventView {
    pub id: i64,
    pub trigger_ref: String,
    pub trigger_id: Option<i64>,
    pub payload: Value,
    pub source: String,
    pub created_at: DateTime<Utc>,
    /// When the rule engine matched it (null while pending).
    pub processed_at: Option<DateTime<Utc>>,
}

const SELECT_EVENT: &str =
    "SELECT id, trigger_ref, trigger_id, payload, source, created_at, processed_at FROM attune.event";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventParams {
    /// Only events of this trigger ref.
    trigger: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The caller's events, newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventParams), security(("bearer" = [])),
    responses((status = 200, body = Page<EventView>)))]
async fn list_events(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<EventParams>,
) -> Result<Json<Page<EventView>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let filter = "WHERE tenant_id = $1 AND ($2::text IS NULL OR trigger_ref = $2)";
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM attune.event {filter}"))
        .bind(who.tenant_id)
        .bind(&q.trigger)
        .fetch_one(&mut *tx)
        .await?;
    let data = sqlx::query_as(&format!("{SELECT_EVENT} {filter} ORDER BY id DESC LIMIT $3 OFFSET $4"))
        .bind(who.tenant_id)
        .bind(&q.trigger)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}

/// One event.
#[utoipa::path(get, path = "/api/v1/events/{id}", tag = "events", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = EventView), (status = 404)))]
async fn get_event(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<EventView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = format!("{SELECT_EVENT} WHERE id = $1 AND tenant_id = $2");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, id, "event").await?))
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EnforcementView {
    pub id: i64,
    pub rule_ref: String,
    pub rule_id: Option<i64>,
    pub event_id: i64,
    /// The execution it requested (none when it failed).
    pub execution_id: Option<i64>,
    /// `created`, `processed` or `failed`.
    pub status: String,
    /// Why it failed: the rule and the template error.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

const SELECT_ENFORCEMENT: &str = "SELECT f.id, f.rule_ref, f.rule_id, f.event_id,
        (SELECT x.id FROM attune.execution x WHERE x.enforcement_id = f.id ORDER BY x.id LIMIT 1) AS execution_id,
        f.status, f.error, f.created_at
   FROM attune.enforcement f";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EnforcementParams {
    /// Only enforcements of this rule ref.
    rule: Option<String>,
    /// Only enforcements of this event.
    event: Option<i64>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The caller's enforcements, newest first.
#[utoipa::path(get, path = "/api/v1/enforcements", tag = "events", params(EnforcementParams), security(("bearer" = [])),
    responses((status = 200, body = Page<EnforcementView>)))]
async fn list_enforcements(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<EnforcementParams>,
) -> Result<Json<Page<EnforcementView>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let filter =
        "WHERE f.tenant_id = $1 AND ($2::text IS NULL OR f.rule_ref = $2) AND ($3::bigint IS NULL OR f.event_id = $3)";
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM attune.enforcement f {filter}"))
        .bind(who.tenant_id)
        .bind(&q.rule)
        .bind(q.event)
        .fetch_one(&mut *tx)
        .await?;
    let data = sqlx::query_as(&format!("{SELECT_ENFORCEMENT} {filter} ORDER BY f.id DESC LIMIT $4 OFFSET $5"))
        .bind(who.tenant_id)
        .bind(&q.rule)
        .bind(q.event)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}

/// One enforcement.
#[utoipa::path(get, path = "/api/v1/enforcements/{id}", tag = "events", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = EnforcementView), (status = 404)))]
async fn get_enforcement(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<EnforcementView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = format!("{SELECT_ENFORCEMENT} WHERE f.id = $1 AND f.tenant_id = $2");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, id, "enforcement").await?))
}
