//! `/api/v1/inquiries`: questions for a human that executions wait on (`core.ask`).
//!
//! The executor opens an inquiry when its execution starts and the execution waits
//! `paused`; an answer here is checked against the inquiry's schema (400 naming the field),
//! recorded with who gave it, and ends the execution `succeeded` with the answer as
//! `result.output` — in the same transaction. Only a `pending` inquiry takes an answer
//! (409 otherwise). An answer and the expiry lock the inquiry row, so exactly one wins.

use attune_core::audit;
use attune_core::domain::inquiry::check_response;
use attune_core::domain::rbac::Role;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Permission, Principal};
use crate::db;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{self, Page};
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(get_one)).routes(routes!(respond))
}

const STATUSES: [&str; 4] = ["pending", "responded", "expired", "canceled"];

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InquiryView {
    pub id: i64,
    /// The execution that waits on it.
    pub execution_id: i64,
    pub prompt: String,
    /// The JSON Schema an answer must satisfy (`{}`: any).
    pub schema: Value,
    /// `pending`, `responded`, `expired` (no answer in time) or `canceled` (its execution was).
    pub status: String,
    /// The answer, once given.
    pub response: Option<Value>,
    /// What the execution gets on expiry.
    pub default_response: Option<Value>,
    /// Only these roles may answer (empty: any role allowed to respond; admins always may).
    pub roles: Vec<String>,
    /// Only these logins may answer (empty: any).
    pub users: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The identity that answered, and its login.
    pub responded_by: Option<i64>,
    pub responded_by_login: Option<String>,
    pub responded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only inquiries in this status: pending, responded, expired or canceled.
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    /// The answer: checked against the inquiry's schema.
    response: Value,
}

async fn inquiries(
    conn: &mut PgConnection,
    tenant_id: i64,
    id: Option<i64>,
    status: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<InquiryView>, sqlx::Error> {
    sqlx::query_file_as!(InquiryView, "../../sql/api/inquiries.sql", tenant_id, id, status, limit, offset)
        .fetch_all(conn)
        .await
}

/// The caller's inquiries, newest first (`?status=pending`: the ones waiting for an answer).
#[utoipa::path(get, path = "/api/v1/inquiries", tag = "inquiries", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<InquiryView>), (status = 400)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<InquiryView>>, ApiError> {
    who.require(Permission::Read)?;
    if let Some(s) = q.status.as_deref() {
        if !STATUSES.contains(&s) {
            return Err(ApiError::BadRequest(format!(
                "status {:?}: expected one of {}",
                crate::error::excerpt(s),
                STATUSES.join(", ")
            )));
        }
    }
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM attune.inquiry WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)"#,
        who.tenant_id,
        q.status
    )
    .fetch_one(&mut *tx)
    .await?;
    let data = inquiries(&mut tx, who.tenant_id, None, q.status.as_deref(), limit, offset).await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}

/// One inquiry.
#[utoipa::path(get, path = "/api/v1/inquiries/{id}", tag = "inquiries", params(("id" = i64, Path)),
    security(("bearer" = [])), responses((status = 200, body = InquiryView), (status = 404)))]
async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<InquiryView>, ApiError> {
    who.require(Permission::Read)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let found = inquiries(&mut tx, who.tenant_id, Some(id), None, 1, 0).await?;
    tx.commit().await?;
    Ok(Json(db::the_one(found, "inquiry", id)?))
}

/// Answers a pending inquiry: its execution ends `succeeded` with the answer as
/// `result.output`, and a workflow waiting on it goes on.
#[utoipa::path(post, path = "/api/v1/inquiries/{id}/respond", tag = "inquiries", params(("id" = i64, Path)),
    request_body = Respond, security(("bearer" = [])),
    responses((status = 200, body = InquiryView), (status = 400, description = "the answer does not satisfy the schema"),
               (status = 403), (status = 404), (status = 409, description = "not pending any more")))]
async fn respond(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Respond>,
) -> Result<Json<InquiryView>, ApiError> {
    who.require(Permission::Respond)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let Some(inquiry) =
        sqlx::query_file!("../../sql/api/inquiry_lock.sql", id, who.tenant_id).fetch_optional(&mut *tx).await?
    else {
        return Err(ApiError::not_found("inquiry", id));
    };
    if inquiry.status != "pending" {
        return Err(ApiError::Conflict(format!(
            "inquiry {id} is {}: only a pending inquiry takes an answer",
            inquiry.status
        )));
    }
    may_answer(&who, &inquiry.roles, &inquiry.users)?;
    if let Err(errors) = check_response(&inquiry.schema, &body.response) {
        return Err(ApiError::BadRequest(format!(
            "the response does not satisfy inquiry {id}'s schema: {}",
            errors.join("; ")
        )));
    }
    let answered = sqlx::query_file_scalar!(
        "../../sql/api/inquiry_respond.sql",
        id,
        inquiry.execution_id,
        body.response,
        who.identity_id
    )
    .fetch_one(&mut *tx)
    .await?;
    if answered == 0 {
        return Err(ApiError::Conflict(format!(
            "inquiry {id}: its execution {} no longer waits for an answer (it is being canceled)",
            inquiry.execution_id
        )));
    }
    let data = json!({"execution_id": inquiry.execution_id});
    audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), "inquiry.responded", "inquiry", id, data).await?;
    let view = db::the_one(inquiries(&mut tx, who.tenant_id, Some(id), None, 1, 0).await?, "inquiry", id)?;
    tx.commit().await?;
    // The workflow engine (a waiting workflow goes on) and the change-log readers.
    state.change_hint.poke();
    Ok(Json(view))
}

/// Whether the caller may answer an inquiry restricted to `roles` / `users` (admins
/// always may; with both lists empty, anyone allowed to respond).
fn may_answer(who: &Principal, roles: &[String], users: &[String]) -> Result<(), ApiError> {
    if who.role == Role::Admin || (roles.is_empty() && users.is_empty()) {
        return Ok(());
    }
    if users.contains(&who.login) || roles.iter().any(|r| r == who.role.as_str()) {
        return Ok(());
    }
    let mut allowed = Vec::new();
    if !roles.is_empty() {
        allowed.push(format!("roles {}", roles.join(", ")));
    }
    if !users.is_empty() {
        allowed.push(format!("users {}", users.join(", ")));
    }
    Err(ApiError::Forbidden(format!(
        "permission denied: this inquiry may be answered only by {} (you are {} with role '{}')",
        allowed.join(" or "),
        who.login,
        who.role
    )))
}
