//! `/api/v1/actions`.

use attune_core::pack::install::{write_action, Mode};
use attune_core::pack::spec::ActionSpec;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::ApiState;
use crate::auth::{Permission, Principal};
use crate::definitions::{delete_definition, duplicate, ensure_writable, invalid, pack_ref_of, patched, writable_pack};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{self, Page};
use crate::{audit, db};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(get_by_ref))
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ActionView {
    pub id: i64,
    #[serde(rename = "ref")]
    #[sqlx(rename = "ref")]
    pub action_ref: String,
    pub pack: String,
    pub description: Option<String>,
    pub runner_type: String,
    pub entry_point: Option<String>,
    pub command: Option<String>,
    pub code: Option<String>,
    pub parameters: Value,
    pub output_schema: Option<Value>,
    pub timeout_seconds: Option<i32>,
    pub retry: Option<Value>,
    pub concurrency: Option<i32>,
    pub secrets: Vec<String>,
    pub workflow: Option<Value>,
    pub http: Option<Value>,
    pub container: Option<Value>,
    pub with_items: Option<String>,
    pub enabled: bool,
    pub system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The fields of a create body, which a PATCH may change (all but `ref`).
const SPEC_FIELDS: &[&str] = &[
    "ref",
    "description",
    "runner_type",
    "entry_point",
    "command",
    "code",
    "parameters",
    "output_schema",
    "timeout_seconds",
    "retry",
    "concurrency",
    "secrets",
    "workflow",
    "http",
    "container",
    "with_items",
    "enabled",
];

const SELECT: &str =
    "SELECT id, ref, split_part(ref, '.', 1) AS pack, description, runner_type, entry_point, command, code,
                             parameters, output_schema, timeout_seconds, retry, concurrency, secrets, workflow, http,
                             container, with_items, enabled, tenant_id IS NULL AS system, created_at, updated_at
                      FROM attune.action";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only actions of this pack.
    pack: Option<String>,
    /// Only actions of this runner type.
    runner_type: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Actions the caller can see (its own and the system packs'), in ref order.
#[utoipa::path(get, path = "/api/v1/actions", tag = "actions", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<ActionView>)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<ActionView>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let filter = "WHERE (tenant_id = $1 OR tenant_id IS NULL)
                    AND ($2::text IS NULL OR split_part(ref, '.', 1) = $2)
                    AND ($3::text IS NULL OR runner_type = $3)";
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM attune.action {filter}"))
        .bind(who.tenant_id)
        .bind(&q.pack)
        .bind(&q.runner_type)
        .fetch_one(&mut *tx)
        .await?;
    let data = sqlx::query_as(&format!("{SELECT} {filter} ORDER BY ref, id LIMIT $4 OFFSET $5"))
        .bind(who.tenant_id)
        .bind(&q.pack)
        .bind(&q.runner_type)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}

pub async fn fetch(conn: &mut PgConnection, tenant_id: i64, id: i64) -> Result<ActionView, ApiError> {
    sqlx::query_as(&db::definition_by_id(SELECT, ""))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("action", id))
}

/// Validates a create (or patched) body and writes it.
async fn save(tx: &mut PgConnection, who: &Principal, spec: ActionSpec, mode: Mode) -> Result<i64, ApiError> {
    let pack = pack_ref_of(spec.action_ref.as_deref(), spec.pack.as_deref())?;
    if matches!(spec.workflow, Some(Value::String(_))) {
        return Err(ApiError::Unprocessable(
            "workflow: through the API a workflow is given inline, as a mapping with tasks".into(),
        ));
    }
    let def = spec.check(&pack, None).map_err(invalid)?;
    let pack_id = writable_pack(tx, who.tenant_id, &pack).await?;
    let id = write_action(tx, Some(who.tenant_id), pack_id, &def, mode)
        .await
        .map_err(duplicate("action", def.action_ref.as_str()))?;
    id.ok_or_else(|| ApiError::Conflict(format!("action {} belongs to another pack", def.action_ref)))
}

/// Creates an action in one of the caller's packs.
#[utoipa::path(post, path = "/api/v1/actions", tag = "actions", request_body = ActionSpec, security(("bearer" = [])),
    responses((status = 201, body = ActionView), (status = 403), (status = 409), (status = 422)))]
async fn create(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(spec): ApiJson<ActionSpec>,
) -> Result<(StatusCode, Json<ActionView>), ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let id = save(&mut tx, &who, spec, Mode::Create).await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    audit::record(&mut tx, &who, "action.created", "action", id, json!({"ref": view.action_ref})).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One action by id.
#[utoipa::path(get, path = "/api/v1/actions/{id}", tag = "actions", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = ActionView), (status = 404)))]
async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ActionView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_id(SELECT, "");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, id, "action").await?))
}

/// One action by ref (the tenant's own, else the system pack's).
#[utoipa::path(get, path = "/api/v1/actions/ref/{ref}", tag = "actions", params(("ref" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = ActionView), (status = 404)))]
async fn get_by_ref(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(r): ApiPath<String>,
) -> Result<Json<ActionView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_ref(SELECT, "");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, r, "action").await?))
}

/// Changes any field but `ref`; the result is validated like a create. `null` clears a field.
#[utoipa::path(patch, path = "/api/v1/actions/{id}", tag = "actions", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = [])), responses((status = 200, body = ActionView), (status = 403), (status = 404), (status = 422)))]
async fn update(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Json<ActionView>, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    ensure_writable(&mut tx, "action", who.tenant_id, id).await?;
    let current =
        serde_json::to_value(fetch(&mut tx, who.tenant_id, id).await?).map_err(|e| ApiError::Internal(e.into()))?;
    let merged = patched(current, &patch, SPEC_FIELDS)?;
    let spec: ActionSpec = serde_json::from_value(merged).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    save(&mut tx, &who, spec, Mode::Upsert).await?;
    audit::record(&mut tx, &who, "action.updated", "action", id, patch).await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// Deletes an action no rule uses.
#[utoipa::path(delete, path = "/api/v1/actions/{id}", tag = "actions", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
async fn delete(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    delete_definition(&state, &who, "action", id).await
}
