//! `/api/v1/users`: an admin adds users to its tenant and lists them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{check_login, check_password, hash_in_background};
use crate::app::ApiState;
use crate::auth::{Permission, Principal, Role};
use crate::definitions::duplicate;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery};
use crate::pagination::{self, Page};
use crate::{audit, db};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list, create))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    login: String,
    password: String,
    role: Role,
    display_name: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub login: String,
    pub display_name: Option<String>,
    pub tenant_id: i64,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

const SELECT: &str = "SELECT id, login, display_name, tenant_id, role, created_at FROM attune.identity";

/// Adds a user with a role to the caller's tenant (admin only).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = [])),
    responses((status = 201, body = UserView), (status = 403), (status = 409), (status = 422)))]
async fn create(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    who.require(Permission::ManageUsers)?;
    check_login(&body.login)?;
    check_password(&body.password)?;
    let hash = hash_in_background(body.password).await?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    // The login is unique across tenants; the tenant's RLS cannot see the others, so ask
    // the database to refuse it (unique violation -> 409).
    let view: UserView = sqlx::query_as(&format!(
        "WITH created AS (INSERT INTO attune.identity (tenant_id, login, display_name, password_hash, role)
                          VALUES ($1, $2, $3, $4, $5) RETURNING *)
         {} FROM created",
        SELECT.trim_end_matches(" FROM attune.identity")
    ))
    .bind(who.tenant_id)
    .bind(&body.login)
    .bind(&body.display_name)
    .bind(&hash)
    .bind(body.role.as_str())
    .fetch_one(&mut *tx)
    .await
    .map_err(duplicate("login", &body.login))?;
    audit::record(&mut tx, &who, "user.created", "identity", view.id, json!({"login": view.login, "role": view.role}))
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The users of the caller's tenant (admin only), in login order.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<UserView>), (status = 403)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<UserView>>, ApiError> {
    who.require(Permission::ManageUsers)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM attune.identity WHERE tenant_id = $1")
        .bind(who.tenant_id)
        .fetch_one(&mut *tx)
        .await?;
    let data = sqlx::query_as(&format!("{SELECT} WHERE tenant_id = $1 ORDER BY login, id LIMIT $2 OFFSET $3"))
        .bind(who.tenant_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}
