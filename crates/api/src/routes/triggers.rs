//! `/api/v1/triggers`. A webhook trigger's answer carries its absolute `webhook_url`;
//! its `webhook_secret` is never returned.

use attune_core::pack::install::{write_trigger, Mode};
use attune_core::pack::spec::TriggerSpec;
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

#[derive(sqlx::FromRow)]
struct TriggerRow {
    id: i64,
    #[sqlx(rename = "ref")]
    trigger_ref: String,
    pack: String,
    description: Option<String>,
    #[sqlx(rename = "type")]
    trigger_type: String,
    parameters: Value,
    payload_schema: Option<Value>,
    webhook_key: Option<String>,
    has_secret: bool,
    enabled: bool,
    system: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerView {
    pub id: i64,
    #[serde(rename = "ref")]
    pub trigger_ref: String,
    pub pack: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub trigger_type: String,
    pub parameters: Value,
    pub payload_schema: Option<Value>,
    /// Absolute URL to POST events to (webhook triggers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Whether deliveries must carry `X-Attune-Signature` (webhook triggers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_signed: Option<bool>,
    pub enabled: bool,
    pub system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SPEC_FIELDS: &[&str] =
    &["ref", "description", "type", "parameters", "payload_schema", "webhook_secret", "enabled"];

const SELECT: &str = "SELECT id, ref, split_part(ref, '.', 1) AS pack, description, type, parameters, payload_schema,
                             webhook_key, webhook_secret IS NOT NULL AS has_secret, enabled,
                             tenant_id IS NULL AS system, created_at, updated_at
                      FROM attune.trigger";

fn view(state: &ApiState, row: TriggerRow) -> TriggerView {
    let is_webhook = row.trigger_type == "webhook";
    TriggerView {
        id: row.id,
        webhook_url: row.webhook_key.map(|k| format!("{}/api/v1/webhooks/{k}", state.ctx.config.public_url())),
        webhook_signed: is_webhook.then_some(row.has_secret),
        trigger_ref: row.trigger_ref,
        pack: row.pack,
        description: row.description,
        trigger_type: row.trigger_type,
        parameters: row.parameters,
        payload_schema: row.payload_schema,
        enabled: row.enabled,
        system: row.system,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only triggers of this pack.
    pack: Option<String>,
    /// Only triggers of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    trigger_type: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Triggers the caller can see, in ref order.
#[utoipa::path(get, path = "/api/v1/triggers", tag = "triggers", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<TriggerView>)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<TriggerView>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let filter = "WHERE (tenant_id = $1 OR tenant_id IS NULL)
                    AND ($2::text IS NULL OR split_part(ref, '.', 1) = $2)
                    AND ($3::text IS NULL OR type = $3)";
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM attune.trigger {filter}"))
        .bind(who.tenant_id)
        .bind(&q.pack)
        .bind(&q.trigger_type)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<TriggerRow> = sqlx::query_as(&format!("{SELECT} {filter} ORDER BY ref, id LIMIT $4 OFFSET $5"))
        .bind(who.tenant_id)
        .bind(&q.pack)
        .bind(&q.trigger_type)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Page { data: rows.into_iter().map(|r| view(&state, r)).collect(), total, limit, offset }))
}

async fn fetch(state: &ApiState, conn: &mut PgConnection, tenant_id: i64, id: i64) -> Result<TriggerView, ApiError> {
    let row: TriggerRow = sqlx::query_as(&db::definition_by_id(SELECT, ""))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("trigger", id))?;
    Ok(view(state, row))
}

async fn save(tx: &mut PgConnection, who: &Principal, spec: TriggerSpec, mode: Mode) -> Result<i64, ApiError> {
    let pack = pack_ref_of(spec.trigger_ref.as_deref(), spec.pack.as_deref())?;
    let def = spec.check(&pack, None).map_err(invalid)?;
    let pack_id = writable_pack(tx, who.tenant_id, &pack).await?;
    let id = write_trigger(tx, Some(who.tenant_id), pack_id, &def, mode)
        .await
        .map_err(duplicate("trigger", def.trigger_ref.as_str()))?;
    id.ok_or_else(|| ApiError::Conflict(format!("trigger {} belongs to another pack", def.trigger_ref)))
}

/// Creates a trigger in one of the caller's packs. A webhook trigger gets an unguessable
/// key inside its `webhook_url`; `webhook_secret` turns on HMAC checking of deliveries.
#[utoipa::path(post, path = "/api/v1/triggers", tag = "triggers", request_body = TriggerSpec, security(("bearer" = [])),
    responses((status = 201, body = TriggerView), (status = 403), (status = 409), (status = 422)))]
async fn create(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(spec): ApiJson<TriggerSpec>,
) -> Result<(StatusCode, Json<TriggerView>), ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let id = save(&mut tx, &who, spec, Mode::Create).await?;
    let view = fetch(&state, &mut tx, who.tenant_id, id).await?;
    audit::record(
        &mut tx,
        &who,
        "trigger.created",
        "trigger",
        id,
        json!({"ref": view.trigger_ref, "type": view.trigger_type}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One trigger by id.
#[utoipa::path(get, path = "/api/v1/triggers/{id}", tag = "triggers", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = TriggerView), (status = 404)))]
async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<TriggerView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_id(SELECT, "");
    let row = db::read_one(state.pool(), who.tenant_id, &sql, id, "trigger").await?;
    Ok(Json(view(&state, row)))
}

/// One trigger by ref.
#[utoipa::path(get, path = "/api/v1/triggers/ref/{ref}", tag = "triggers", params(("ref" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = TriggerView), (status = 404)))]
async fn get_by_ref(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(r): ApiPath<String>,
) -> Result<Json<TriggerView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_ref(SELECT, "");
    let row = db::read_one(state.pool(), who.tenant_id, &sql, r, "trigger").await?;
    Ok(Json(view(&state, row)))
}

/// Changes any field but `ref`; validated like a create. The webhook URL stays the same.
#[utoipa::path(patch, path = "/api/v1/triggers/{id}", tag = "triggers", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = [])), responses((status = 200, body = TriggerView), (status = 403), (status = 404), (status = 422)))]
async fn update(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Json<TriggerView>, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    ensure_writable(&mut tx, "trigger", who.tenant_id, id).await?;
    let mut current = serde_json::to_value(fetch(&state, &mut tx, who.tenant_id, id).await?)
        .map_err(|e| ApiError::Internal(e.into()))?;
    // The view never shows the secret; carry it over unless the patch changes it.
    let secret: Option<String> = sqlx::query_scalar("SELECT webhook_secret FROM attune.trigger WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    current["webhook_secret"] = json!(secret);
    let merged = patched(current, &patch, SPEC_FIELDS)?;
    let spec: TriggerSpec = serde_json::from_value(merged).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    save(&mut tx, &who, spec, Mode::Upsert).await?;
    let mut logged = patch.clone();
    if logged.get("webhook_secret").is_some() {
        logged["webhook_secret"] = json!("********");
    }
    audit::record(&mut tx, &who, "trigger.updated", "trigger", id, logged).await?;
    let view = fetch(&state, &mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// Deletes a trigger no rule uses.
#[utoipa::path(delete, path = "/api/v1/triggers/{id}", tag = "triggers", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
async fn delete(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    delete_definition(&state, &who, "trigger", id).await
}
