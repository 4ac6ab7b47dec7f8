//! `/api/v1/executions`: manual runs, lists, one execution, its children.

use std::sync::Arc;

use attune_core::admission::{admit, ActionTerms};
use attune_core::audit;
use attune_core::domain::{ExecutionStatus, ParamSchema, RunnerType};
use attune_core::execution::{self, NewRun};
use attune_core::handoff;
use attune_core::wakeup::Tags;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::action_cache::CachedAction;
use crate::auth::{Permission, Principal};
use crate::db;
use crate::error::{excerpt, ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{self, Page};
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one))
        .routes(routes!(children))
        .routes(routes!(cancel))
}

/// One row of `sql/api/executions.sql`.
struct ExecutionRow {
    id: i64,
    action_ref: String,
    status: ExecutionStatus,
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
    workflow_task: Option<String>,
    item_index: Option<i32>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExecutionView {
    pub id: i64,
    pub action_ref: String,
    /// requested, scheduled, running, paused, canceling, succeeded, failed, canceled, succeeded_with_errors
    pub status: ExecutionStatus,
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
    /// The task of its parent workflow this execution runs (workflow children only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_task: Option<String>,
    /// Its position in its task's with-items list (with-items children only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_index: Option<i32>,
    /// How far below the execution asked for (`children?depth=all` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<i32>,
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
        workflow_task: row.workflow_task,
        item_index: row.item_index,
        depth: None,
    }
}

/// Which executions `select` reads.
#[derive(Default)]
struct Filter<'a> {
    id: Option<i64>,
    action: Option<&'a str>,
    status: Option<ExecutionStatus>,
    parent: Option<i64>,
    rule: Option<&'a str>,
}

async fn select(
    conn: &mut PgConnection,
    tenant_id: i64,
    f: &Filter<'_>,
    (limit, offset): (i64, i64),
    with_output: bool,
) -> Result<Vec<ExecutionView>, sqlx::Error> {
    let rows = sqlx::query_file_as!(
        ExecutionRow,
        "../../sql/api/executions.sql",
        tenant_id,
        f.id,
        f.action,
        f.status.map(ExecutionStatus::as_str),
        f.parent,
        f.rule,
        limit,
        offset,
        with_output
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| view(r, with_output)).collect())
}

async fn fetch(conn: &mut PgConnection, tenant_id: i64, id: i64) -> Result<ExecutionView, ApiError> {
    let found = select(conn, tenant_id, &Filter { id: Some(id), ..Filter::default() }, (1, 0), true).await?;
    db::the_one(found, "execution", id)
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
/// parameter, and nothing is created. An action with `run_roles` runs only for those roles
/// (an execution's own token counts as `executor`).
#[utoipa::path(post, path = "/api/v1/executions", tag = "executions", request_body = RunRequest, security(("bearer" = [])),
    responses((status = 201, body = ExecutionView),
              (status = 403, description = "the role lacks executions:run, or is not among the action's run_roles", body = ErrorBody),
              (status = 404, description = "no such action visible to the caller", body = ErrorBody),
              (status = 409, description = "the action is disabled", body = ErrorBody)))]
async fn create(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(body): ApiJson<RunRequest>,
) -> Result<(StatusCode, Json<ExecutionView>), ApiError> {
    who.require(Permission::Run)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    // The action as this process last read it (see `action_cache`), else (and after it
    // turned out stale) read now.
    let mut kept = state.actions.get(who.tenant_id, &body.action);
    let (action, created, here) = loop {
        let (action, cached) = match kept.take() {
            Some(action) => (action, true),
            None => (read_action(&state, &mut tx, who.tenant_id, &body.action).await?, false),
        };
        let run = match admitted_run(&state, &who, &action, body.parameters.clone()) {
            Ok(run) => run,
            // A refusal stands once the entry it was made on is known to be current (a
            // refusal on an entry gone stale is counted in the admission metrics too).
            Err(refused) if !cached || !definitions_moved(&mut tx, action.version).await? => return Err(refused),
            Err(_) => continue,
        };
        // Admitted above with the scheduler's rules, so created `scheduled` (with the trail
        // of its request and its scheduling, as the scheduler writes it): the workers take
        // it at once, without a round of the scheduler in between — or, when a worker lane
        // of this process is idle, created `running` on it and handed over after the commit
        // (`attune_core::handoff`). On a cached entry only while the definitions have not
        // changed since it was read.
        let here = state.ctx.lanes.reserve(action.runner_type);
        let version = cached.then_some(action.version);
        if let Some(created) = execution::create_run(&mut tx, &run, version, here.as_ref()).await? {
            break (action, created, here);
        }
    };
    // The answer: the execution as requested.
    let view = ExecutionView {
        id: created.id,
        action_ref: action.action_ref.clone(),
        status: ExecutionStatus::Requested,
        parameters: created.parameters,
        result: None,
        parent_id: None,
        enforcement_id: None,
        rule_ref: None,
        attempt: created.attempt,
        max_attempts: created.max_attempts,
        created_at: created.created_at,
        scheduled_at: None,
        started_at: None,
        finished_at: None,
        worker: None,
        workflow_task: None,
        item_index: None,
        depth: None,
    };
    let handed: Vec<_> = here.zip(created.handed).into_iter().collect();
    let scheduled = handed.is_empty();
    handoff::commit_and_hand(state.pool(), tx, handed).await?;
    if scheduled {
        state.scheduled_hint.poke_tagged(Tags::runners([action.runner_type]));
    }
    Ok((StatusCode::CREATED, Json(view)))
}

/// Reads the action `name` names for `tenant` (its own, else a system one) and keeps it in
/// the cache; 404 when there is none.
async fn read_action(
    state: &ApiState,
    tx: &mut PgConnection,
    tenant: i64,
    name: &str,
) -> Result<Arc<CachedAction>, ApiError> {
    let row = sqlx::query!(
        r#"SELECT id, ref, runner_type AS "runner_type: RunnerType", param_schema, secret_params, enabled,
                  timeout_seconds, retry, run_roles,
                  (SELECT version FROM attune.definition_version) AS "version!"
             FROM attune.action
            WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL) ORDER BY tenant_id NULLS LAST LIMIT 1"#,
        name,
        tenant
    )
    .fetch_optional(tx)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("action {:?} not found", excerpt(name))))?;
    let action = Arc::new(CachedAction {
        id: row.id,
        schema: ParamSchema::parse(&row.param_schema),
        action_ref: row.r#ref,
        runner_type: row.runner_type,
        secret_params: row.secret_params,
        enabled: row.enabled,
        timeout_seconds: row.timeout_seconds,
        retry: row.retry,
        run_roles: row.run_roles,
        version: row.version,
    });
    state.actions.put(tenant, name, action.clone());
    Ok(action)
}

/// Whether an action or a rule changed since `version` was read.
async fn definitions_moved(tx: &mut PgConnection, version: i64) -> Result<bool, ApiError> {
    let now = sqlx::query_scalar!("SELECT version FROM attune.definition_version").fetch_one(tx).await?;
    Ok(now != version)
}

/// The run of `action` the caller asks for, admitted with the scheduler's rules; the
/// refusal otherwise (an action with `run_roles` runs only for those roles; an execution's
/// own token counts as `executor`).
fn admitted_run(
    state: &ApiState,
    who: &Principal,
    action: &CachedAction,
    parameters: Map<String, Value>,
) -> Result<NewRun, ApiError> {
    who.may_run(&action.action_ref, action.run_roles.as_deref())?;
    // The same admission the scheduler and the rule engine apply, answered now.
    let terms = ActionTerms {
        action_ref: &action.action_ref,
        runner_type: action.runner_type,
        enabled: action.enabled,
        schema: Some(&action.schema),
        secret_names: &action.secret_params,
        timeout_seconds: action.timeout_seconds,
        retry: action.retry.as_ref(),
    };
    let admission = admit(&state.ctx, &terms, Ok(Value::Object(parameters)));
    match admission.failure_reason {
        None => {}
        Some("action_disabled") => return Err(ApiError::Conflict(format!("action {} is disabled", action.action_ref))),
        Some("invalid_parameters") if action.schema.is_err() => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "action {}: {}",
                action.action_ref,
                admission.error().unwrap_or("")
            )))
        }
        Some(_) => return Err(ApiError::Unprocessable(admission.error().unwrap_or("not admitted").to_string())),
    }
    Ok(NewRun {
        tenant_id: who.tenant_id,
        action_id: action.id,
        action_ref: action.action_ref.clone(),
        runner_type: action.runner_type,
        parameters: admission.parameters,
        secret_params: admission.secret_params,
        max_attempts: admission.max_attempts,
        timeout_seconds: admission.timeout_seconds,
        // An execution's own token has no identity behind it.
        requested_by: who.execution_id.is_none().then_some(who.identity_id),
        actor: who.actor(),
    })
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

async fn list_where(state: &ApiState, who: &Principal, q: ListParams) -> Result<Page<ExecutionView>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let status = q.status.as_deref().map(ExecutionStatus::parse).transpose().map_err(ApiError::BadRequest)?;
    let f = Filter { id: None, action: q.action.as_deref(), status, parent: q.parent, rule: q.rule.as_deref() };
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total = sqlx::query_file_scalar!(
        "../../sql/api/executions_count.sql",
        who.tenant_id,
        f.action,
        f.status.map(ExecutionStatus::as_str),
        f.parent,
        f.rule
    )
    .fetch_one(&mut *tx)
    .await?;
    let data = select(&mut tx, who.tenant_id, &f, (limit, offset), false).await?;
    tx.commit().await?;
    Ok(Page { data, total, limit, offset })
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
    responses((status = 200, body = ExecutionView), (status = 404, description = "no such execution in the caller's tenant", body = ErrorBody)))]
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
pub struct ChildrenParams {
    limit: Option<i64>,
    offset: Option<i64>,
    /// `all`: every descendant (the whole workflow tree, oldest first, each with its
    /// `depth` and `parent_id`); absent or `1`: the direct children, newest first.
    depth: Option<String>,
}

/// The children of an execution (workflow tasks, with-items items): the direct ones,
/// newest first, or with `?depth=all` the whole tree below it, oldest first. Workflow
/// children carry `workflow_task` (and `item_index` for with-items); a task's attempts are
/// its children of the same `workflow_task`.
#[utoipa::path(get, path = "/api/v1/executions/{id}/children", tag = "executions", params(("id" = i64, Path), ChildrenParams),
    security(("bearer" = [])),
    responses((status = 200, body = Page<ExecutionView>),
              (status = 400, description = "depth is neither 1 nor all", body = ErrorBody),
              (status = 404, description = "no such execution in the caller's tenant", body = ErrorBody)))]
async fn children(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ChildrenParams>,
) -> Result<Json<Page<ExecutionView>>, ApiError> {
    who.require(Permission::Read)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    fetch(&mut tx, who.tenant_id, id).await?;
    match q.depth.as_deref() {
        None | Some("1") => {
            tx.commit().await?;
            let params = ListParams {
                action: None,
                status: None,
                parent: Some(id),
                rule: None,
                limit: q.limit,
                offset: q.offset,
            };
            Ok(Json(list_where(&state, &who, params).await?))
        }
        Some("all") => {
            let page = tree(&mut tx, who.tenant_id, id, q.limit, q.offset).await?;
            tx.commit().await?;
            Ok(Json(page))
        }
        Some(other) => Err(ApiError::BadRequest(format!("depth: expected 1 or all, got {:?}", excerpt(other)))),
    }
}

/// Every descendant of `id`, oldest first.
async fn tree(
    conn: &mut PgConnection,
    tenant_id: i64,
    id: i64,
    limit: Option<i64>,
    offset: Option<i64>,
) -> Result<Page<ExecutionView>, ApiError> {
    let (limit, offset) = pagination::resolve(limit, offset)?;
    let rows =
        sqlx::query_file!("../../sql/api/execution_tree.sql", tenant_id, id, limit, offset).fetch_all(conn).await?;
    let total = rows.first().map_or(0, |r| r.total);
    let data = rows
        .into_iter()
        .map(|r| {
            let depth = r.depth;
            let row = ExecutionRow {
                id: r.id,
                action_ref: r.action_ref,
                status: r.status,
                parameters: r.parameters,
                result: r.result,
                stdout: None,
                stderr: None,
                parent_id: r.parent_id,
                enforcement_id: r.enforcement_id,
                rule_ref: r.rule_ref,
                attempt: r.attempt,
                max_attempts: r.max_attempts,
                created_at: r.created_at,
                scheduled_at: r.scheduled_at,
                started_at: r.started_at,
                finished_at: r.finished_at,
                worker: r.worker,
                workflow_task: r.workflow_task,
                item_index: r.item_index,
            };
            ExecutionView { depth: Some(depth), ..view(row, false) }
        })
        .collect();
    Ok(Page { data, total, limit, offset })
}

/// Cancels an execution: one not running yet is `canceled` at once; a running one becomes
/// `canceling` and its worker stops the process group (SIGTERM, then SIGKILL after the
/// grace period), ending it `canceled`. A finished execution is a 409.
#[utoipa::path(post, path = "/api/v1/executions/{id}/cancel", tag = "executions", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 202, body = ExecutionView),
              (status = 403, description = "the role lacks executions:cancel", body = ErrorBody),
              (status = 404, description = "no such execution in the caller's tenant", body = ErrorBody),
              (status = 409, description = "the execution has already ended", body = ErrorBody)))]
async fn cancel(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<ExecutionView>), ApiError> {
    who.require(Permission::Cancel)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let status = sqlx::query_file_scalar!("../../sql/api/cancel_execution.sql", id, who.tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(status) = status else {
        let current = sqlx::query_scalar!(
            r#"SELECT status AS "status: ExecutionStatus" FROM attune.execution WHERE id = $1 AND tenant_id = $2"#,
            id,
            who.tenant_id
        )
        .fetch_optional(&mut *tx)
        .await?;
        return Err(match current {
            None => ApiError::not_found("execution", id),
            Some(s) => {
                ApiError::Conflict(format!("execution {id} has already ended ({s}); there is nothing to cancel"))
            }
        });
    };
    let action = if status == ExecutionStatus::Canceled { "execution.canceled" } else { "execution.cancel_requested" };
    audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), action, "execution", id, json!({})).await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    state.cancel_hint.poke();
    Ok((StatusCode::ACCEPTED, Json(view)))
}
