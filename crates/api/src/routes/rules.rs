//! `/api/v1/rules`. Trigger and action refs are resolved when the rule is created;
//! criteria and parameter templates are compiled then too.

use attune_core::domain::Ref;
use attune_core::pack::install::{resolve, write_rule, Mode};
use attune_core::pack::spec::RuleSpec;
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
pub struct RuleView {
    pub id: i64,
    #[serde(rename = "ref")]
    #[sqlx(rename = "ref")]
    pub rule_ref: String,
    pub pack: String,
    pub description: Option<String>,
    /// Trigger ref.
    pub trigger: String,
    /// Action ref.
    pub action: String,
    pub criteria: Option<String>,
    pub action_params: Value,
    pub enabled: bool,
    pub notify_on_trigger: bool,
    pub system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SPEC_FIELDS: &[&str] =
    &["ref", "description", "trigger", "action", "criteria", "action_params", "enabled", "notify_on_trigger"];
/// What a PATCH may change (API.md).
const PATCHABLE: &[&str] = &["enabled", "criteria", "action_params", "notify_on_trigger", "description"];

const SELECT: &str =
    "SELECT r.id, r.ref, split_part(r.ref, '.', 1) AS pack, r.description, t.ref AS trigger, a.ref AS action,
                             r.criteria, r.action_params, r.enabled, r.notify_on_trigger, r.tenant_id IS NULL AS system,
                             r.created_at, r.updated_at
                      FROM attune.rule r
                      JOIN attune.trigger t ON t.id = r.trigger_id
                      JOIN attune.action a ON a.id = r.action_id";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pack: Option<String>,
    /// Only rules of this trigger ref.
    trigger: Option<String>,
    /// Only rules running this action ref.
    action: Option<String>,
    enabled: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Rules the caller can see, in ref order.
#[utoipa::path(get, path = "/api/v1/rules", tag = "rules", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<RuleView>)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<RuleView>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let filter = "WHERE (r.tenant_id = $1 OR r.tenant_id IS NULL)
                    AND ($2::text IS NULL OR split_part(r.ref, '.', 1) = $2)
                    AND ($3::text IS NULL OR t.ref = $3)
                    AND ($4::text IS NULL OR a.ref = $4)
                    AND ($5::bool IS NULL OR r.enabled = $5)";
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM attune.rule r JOIN attune.trigger t ON t.id = r.trigger_id JOIN attune.action a ON a.id = r.action_id {filter}"
    ))
    .bind(who.tenant_id)
    .bind(&q.pack)
    .bind(&q.trigger)
    .bind(&q.action)
    .bind(q.enabled)
    .fetch_one(&mut *tx)
    .await?;
    let data = sqlx::query_as(&format!("{SELECT} {filter} ORDER BY r.ref, r.id LIMIT $6 OFFSET $7"))
        .bind(who.tenant_id)
        .bind(&q.pack)
        .bind(&q.trigger)
        .bind(&q.action)
        .bind(q.enabled)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}

async fn fetch(conn: &mut PgConnection, tenant_id: i64, id: i64) -> Result<RuleView, ApiError> {
    sqlx::query_as(&db::definition_by_id(SELECT, "r."))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("rule", id))
}

async fn resolve_ref(conn: &mut PgConnection, table: &str, tenant_id: i64, r: &Ref) -> Result<i64, ApiError> {
    resolve(conn, table, Some(tenant_id), r)
        .await?
        .ok_or_else(|| ApiError::Unprocessable(format!("{table}: {table} {:?} does not exist", r.as_str())))
}

async fn save(tx: &mut PgConnection, who: &Principal, spec: RuleSpec, mode: Mode) -> Result<i64, ApiError> {
    let pack = pack_ref_of(spec.rule_ref.as_deref(), spec.pack.as_deref())?;
    let def = spec.check(&pack, None).map_err(invalid)?;
    let pack_id = writable_pack(tx, who.tenant_id, &pack).await?;
    let trigger_id = resolve_ref(tx, "trigger", who.tenant_id, &def.trigger).await?;
    let action_id = resolve_ref(tx, "action", who.tenant_id, &def.action).await?;
    let id = write_rule(tx, Some(who.tenant_id), pack_id, &def, trigger_id, action_id, mode)
        .await
        .map_err(duplicate("rule", def.rule_ref.as_str()))?;
    id.ok_or_else(|| ApiError::Conflict(format!("rule {} belongs to another pack", def.rule_ref)))
}

/// Creates a rule: when `trigger` fires and `criteria` holds, run `action` with `action_params`.
#[utoipa::path(post, path = "/api/v1/rules", tag = "rules", request_body = RuleSpec, security(("bearer" = [])),
    responses((status = 201, body = RuleView), (status = 403), (status = 409), (status = 422)))]
async fn create(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(spec): ApiJson<RuleSpec>,
) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let id = save(&mut tx, &who, spec, Mode::Create).await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    audit::record(
        &mut tx,
        &who,
        "rule.created",
        "rule",
        id,
        json!({"ref": view.rule_ref, "trigger": view.trigger, "action": view.action}),
    )
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One rule by id.
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "rules", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = RuleView), (status = 404)))]
async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RuleView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_id(SELECT, "r.");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, id, "rule").await?))
}

/// One rule by ref.
#[utoipa::path(get, path = "/api/v1/rules/ref/{ref}", tag = "rules", params(("ref" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RuleView), (status = 404)))]
async fn get_by_ref(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(r): ApiPath<String>,
) -> Result<Json<RuleView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_ref(SELECT, "r.");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, r, "rule").await?))
}

/// Changes any of `enabled`, `criteria`, `action_params`, `notify_on_trigger`,
/// `description`. Disabling takes effect for the next event.
#[utoipa::path(patch, path = "/api/v1/rules/{id}", tag = "rules", params(("id" = i64, Path)), request_body = Object,
    security(("bearer" = [])), responses((status = 200, body = RuleView), (status = 403), (status = 404), (status = 422)))]
async fn update(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Json<RuleView>, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    if let Some(map) = patch.as_object() {
        if let Some(bad) = map.keys().find(|k| !PATCHABLE.contains(&k.as_str())) {
            return Err(ApiError::Unprocessable(format!(
                "{bad}: cannot be changed on a rule; a PATCH may change {}",
                PATCHABLE.join(", ")
            )));
        }
    }
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    ensure_writable(&mut tx, "rule", who.tenant_id, id).await?;
    let current =
        serde_json::to_value(fetch(&mut tx, who.tenant_id, id).await?).map_err(|e| ApiError::Internal(e.into()))?;
    let merged = patched(current, &patch, SPEC_FIELDS)?;
    let spec: RuleSpec = serde_json::from_value(merged).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    save(&mut tx, &who, spec, Mode::Upsert).await?;
    audit::record(&mut tx, &who, "rule.updated", "rule", id, patch).await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// Deletes a rule.
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "rules", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403), (status = 404)))]
async fn delete(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    delete_definition(&state, &who, "rule", id).await
}
