//! `/api/v1/executions`: manual runs, lists, one execution, its children.

use attune_core::audit::Actor;
use attune_core::domain::ParamSchema;
use attune_core::execution::{self, NewExecution};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::ApiState;
use crate::auth::{Permission, Principal};
use crate::db;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{self, Page};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one))
        .routes(routes!(children))
        .routes(routes!(cancel))
}

#[derive(sqlx::FromRow)]
struct ExecutionRow {
    id: i64,
    action_ref: String,
    status: String,
    parameters: Value,
    result: Option<Value>,
    stdout: Option<String>,
    stderr: Option<String>,
    parent_id: Option<i64>,
    enforcement_id: Option<i64>,
    rule_ref: Option<String>,
    attempt: i32,
    max_attempts: i32,
    created_at: DateTime<Utc>,
    scheduled_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    worker: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionView {
    pub id: i64,
    pub action_ref: String,
    /// requested, scheduled, running, paused, canceling, succeeded, failed, canceled, succeeded_with_errors
    pub status: String,
    /// Secret parameters are shown as "********".
    pub parameters: Value,
    /// `{exit_code, stdout, stderr, output, error, truncated}` once finished (lists leave
    /// out stdout and stderr: GET the execution for them).
    pub result: Option<Value>,
    pub parent_id: Option<i64>,
    pub enforcement_id: Option<i64>,
    pub rule_ref: Option<String>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub worker: Option<String>,
}

fn view(row: ExecutionRow, with_output: bool) -> ExecutionView {
    let result = row.result.map(|mut r| {
        if with_output {
            r["stdout"] = json!(row.stdout.unwrap_or_default());
            r["stderr"] = json!(row.stderr.unwrap_or_default());
        }
        r
    });
    ExecutionView {
        id: row.id,
        action_ref: row.action_ref,
        status: row.status,
        parameters: row.parameters,
        result,
        parent_id: row.parent_id,
        enforcement_id: row.enforcement_id,
        rule_ref: row.rule_ref,
        attempt: row.attempt,
        max_attempts: row.max_attempts,
        created_at: row.created_at,
        scheduled_at: row.scheduled_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        worker: row.worker,
    }
}

/// `$OUTPUT` is replaced by the output columns or NULLs.
const SELECT: &str =
    "SELECT e.id, e.action_ref, e.status, e.parameters, e.result, $OUTPUT, e.parent_id, e.enforcement_id,
                             e.rule_ref, e.attempt, e.max_attempts, e.created_at, e.scheduled_at, e.started_at,
                             e.finished_at, w.name AS worker
                        FROM attune.execution e
                        LEFT JOIN attune.worker w ON w.id = e.worker_id";

fn select(with_output: bool) -> String {
    if with_output {
        SELECT.replace("$OUTPUT", "o.stdout, o.stderr").replace(
            "LEFT JOIN attune.worker w ON w.id = e.worker_id",
            "LEFT JOIN attune.worker w ON w.id = e.worker_id LEFT JOIN attune.execution_output o ON o.execution_id = e.id",
        )
    } else {
        SELECT.replace("$OUTPUT", "NULL::text AS stdout, NULL::text AS stderr")
    }
}

async fn fetch(conn: &mut PgConnection, tenant_id: i64, id: i64) -> Result<ExecutionView, ApiError> {
    let row: ExecutionRow = sqlx::query_as(&format!("{} WHERE e.id = $1 AND e.tenant_id = $2", select(true)))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("execution", id))?;
    Ok(view(row, true))
}

#[derive(sqlx::FromRow)]
struct RunnableAction {
    id: i64,
    #[sqlx(rename = "ref")]
    action_ref: String,
    runner_type: String,
    param_schema: Value,
    secret_params: Vec<String>,
    enabled: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Action ref (`pack.name`).
    action: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// Runs an action now. Parameters are validated first: invalid ones are a 422 naming the
/// parameter, and nothing is created.
#[utoipa::path(post, path = "/api/v1/executions", tag = "executions", request_body = RunRequest, security(("bearer" = [])),
    responses((status = 201, body = ExecutionView), (status = 403), (status = 404), (status = 422)))]
async fn create(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(body): ApiJson<RunRequest>,
) -> Result<(StatusCode, Json<ExecutionView>), ApiError> {
    who.require(Permission::Run)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let action: Option<RunnableAction> = sqlx::query_as(
        "SELECT id, ref, runner_type, param_schema, secret_params, enabled FROM attune.action
          WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL) ORDER BY tenant_id NULLS LAST LIMIT 1",
    )
    .bind(&body.action)
    .bind(who.tenant_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(RunnableAction {
        id: action_id,
        action_ref,
        runner_type,
        param_schema: schema,
        secret_params: secret_names,
        enabled,
    }) = action
    else {
        return Err(ApiError::NotFound(format!("action {:?} not found", body.action)));
    };
    if !enabled {
        return Err(ApiError::Conflict(format!("action {action_ref} is disabled")));
    }
    let schema =
        ParamSchema::parse(&schema).map_err(|e| ApiError::Internal(anyhow::anyhow!("action {action_ref}: {e}")))?;
    let mut params = body.parameters;
    schema.apply_defaults(&mut params);
    let params = Value::Object(params);
    schema.validate(&params).map_err(|errors| ApiError::Unprocessable(errors.join("; ")))?;

    let new = NewExecution {
        tenant_id: who.tenant_id,
        action_id,
        action_ref: action_ref.clone(),
        runner_type,
        parameters: params,
        secret_names,
        enforcement_id: None,
        rule_id: None,
        rule_ref: None,
        // An execution's own token has no identity behind it.
        requested_by: who.execution_id.is_none().then_some(who.identity_id),
        parent_id: None,
    };
    let ids = execution::insert(&mut tx, &state.ctx.keys.encryption_key, &[new]).await?;
    let id = ids[0];
    let entry = attune_core::audit::Entry {
        tenant_id: Some(who.tenant_id),
        actor: Actor::user(who.identity_id, &who.login),
        action: "execution.requested".into(),
        entity_type: "execution".into(),
        entity_id: id.to_string(),
        data: json!({"action": action_ref}),
    };
    attune_core::audit::record(&mut tx, &[entry]).await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    state.requested_hint.poke();
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only executions of this action ref.
    action: Option<String>,
    /// Only executions in this status.
    status: Option<String>,
    /// Only children of this execution.
    parent: Option<i64>,
    /// Only executions created by this rule ref.
    rule: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

const STATUSES: &[&str] = &[
    "requested",
    "scheduled",
    "running",
    "paused",
    "canceling",
    "succeeded",
    "failed",
    "canceled",
    "succeeded_with_errors",
];

async fn list_where(state: &ApiState, who: &Principal, q: ListParams) -> Result<Page<ExecutionView>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    if let Some(s) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::BadRequest(format!("status {s:?} is not one of {}", STATUSES.join(", "))));
    }
    let filter =
        "WHERE e.tenant_id = $1 AND ($2::text IS NULL OR e.action_ref = $2) AND ($3::text IS NULL OR e.status = $3)
                    AND ($4::bigint IS NULL OR e.parent_id = $4) AND ($5::text IS NULL OR e.rule_ref = $5)";
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM attune.execution e {filter}"))
        .bind(who.tenant_id)
        .bind(&q.action)
        .bind(&q.status)
        .bind(q.parent)
        .bind(&q.rule)
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<ExecutionRow> =
        sqlx::query_as(&format!("{} {filter} ORDER BY e.id DESC LIMIT $6 OFFSET $7", select(false)))
            .bind(who.tenant_id)
            .bind(&q.action)
            .bind(&q.status)
            .bind(q.parent)
            .bind(&q.rule)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(Page { data: rows.into_iter().map(|r| view(r, false)).collect(), total, limit, offset })
}

/// The caller's executions, newest first.
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<ExecutionView>)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<ExecutionView>>, ApiError> {
    Ok(Json(list_where(&state, &who, q).await?))
}

/// One execution, with its captured output.
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = ExecutionView), (status = 404)))]
async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ExecutionView>, ApiError> {
    who.require(Permission::Read)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    Ok(Json(view))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The direct children of an execution (workflow tasks, with-items items), newest first.
#[utoipa::path(get, path = "/api/v1/executions/{id}/children", tag = "executions", params(("id" = i64, Path), PageParams),
    security(("bearer" = [])), responses((status = 200, body = Page<ExecutionView>), (status = 404)))]
async fn children(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Json<Page<ExecutionView>>, ApiError> {
    who.require(Permission::Read)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    let params =
        ListParams { action: None, status: None, parent: Some(id), rule: None, limit: q.limit, offset: q.offset };
    Ok(Json(list_where(&state, &who, params).await?))
}

/// Cancels an execution: one not running yet is `canceled` at once; a running one becomes
/// `canceling` and its worker stops the process group (SIGTERM, then SIGKILL after the
/// grace period), ending it `canceled`. A finished execution is a 409.
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions", params(("id" = i64, Path)),
    security(("bearer" = [])), responses((status = 202, body = ExecutionView), (status = 403), (status = 404), (status = 409)))]
async fn cancel(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<ExecutionView>), ApiError> {
    who.require(Permission::Cancel)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let status: Option<String> = sqlx::query_scalar(include_str!("../../../../sql/api/cancel_execution.sql"))
        .bind(id)
        .bind(who.tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(status) = status else {
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM attune.execution WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(who.tenant_id)
                .fetch_optional(&mut *tx)
                .await?;
        return Err(match current {
            None => ApiError::not_found("execution", id),
            Some(s) => {
                ApiError::Conflict(format!("execution {id} has already ended ({s}); there is nothing to cancel"))
            }
        });
    };
    let entry = attune_core::audit::Entry {
        tenant_id: Some(who.tenant_id),
        actor: Actor::user(who.identity_id, &who.login),
        action: if status == "canceled" { "execution.canceled".into() } else { "execution.cancel_requested".into() },
        entity_type: "execution".into(),
        entity_id: id.to_string(),
        data: json!({}),
    };
    attune_core::audit::record(&mut tx, &[entry]).await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    state.cancel_hint.poke();
    Ok((StatusCode::ACCEPTED, Json(view)))
}
