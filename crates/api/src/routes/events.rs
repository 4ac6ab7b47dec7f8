//! `/api/v1/events` and `/api/v1/enforcements`: what fired, and which rules it matched.

use attune_core::domain::EnforcementStatus;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Permission, Principal};
use crate::db;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::pagination::{self, Page};
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_event))
        .routes(routes!(list_enforcements))
        .routes(routes!(get_enforcement))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM attune.event WHERE tenant_id = $1 AND ($2::text IS NULL OR trigger_ref = $2)"#,
        who.tenant_id,
        q.trigger
    )
    .fetch_one(&mut *tx)
    .await?;
    let data = events(&mut tx, who.tenant_id, None, q.trigger.as_deref(), limit, offset).await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}

async fn events(
    conn: &mut PgConnection,
    tenant_id: i64,
    id: Option<i64>,
    trigger: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<EventView>, sqlx::Error> {
    sqlx::query_file_as!(EventView, "../../sql/api/events.sql", tenant_id, id, trigger, limit, offset)
        .fetch_all(conn)
        .await
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
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let found = events(&mut tx, who.tenant_id, Some(id), None, 1, 0).await?;
    tx.commit().await?;
    Ok(Json(db::the_one(found, "event", id)?))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EnforcementView {
    pub id: i64,
    pub rule_ref: String,
    pub rule_id: Option<i64>,
    pub event_id: i64,
    /// The execution it requested (none when it failed).
    pub execution_id: Option<i64>,
    /// `created`, `processed` or `failed`.
    pub status: EnforcementStatus,
    /// Why it failed: the rule and the template error.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

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
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM attune.enforcement
            WHERE tenant_id = $1 AND ($2::text IS NULL OR rule_ref = $2) AND ($3::bigint IS NULL OR event_id = $3)"#,
        who.tenant_id,
        q.rule,
        q.event
    )
    .fetch_one(&mut *tx)
    .await?;
    let filter = (q.rule.as_deref(), q.event);
    let data = enforcements(&mut tx, who.tenant_id, None, filter, limit, offset).await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}

async fn enforcements(
    conn: &mut PgConnection,
    tenant_id: i64,
    id: Option<i64>,
    (rule, event): (Option<&str>, Option<i64>),
    limit: i64,
    offset: i64,
) -> Result<Vec<EnforcementView>, sqlx::Error> {
    sqlx::query_file_as!(EnforcementView, "../../sql/api/enforcements.sql", tenant_id, id, rule, event, limit, offset)
        .fetch_all(conn)
        .await
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
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let found = enforcements(&mut tx, who.tenant_id, Some(id), (None, None), 1, 0).await?;
    tx.commit().await?;
    Ok(Json(db::the_one(found, "enforcement", id)?))
}
