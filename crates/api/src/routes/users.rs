//! `/api/v1/users`: an admin adds users to its tenant and lists them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use attune_core::audit;

use crate::auth::credentials::{check_login, check_password, hash_in_background};
use crate::auth::{Permission, Principal, Role};
use crate::db;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::pagination::{self, Page};
use crate::state::ApiState;

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

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub login: String,
    pub display_name: Option<String>,
    pub tenant_id: i64,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Adds a user with a role to the caller's tenant (admin only).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser, security(("bearer" = [])),
    responses((status = 201, body = UserView),
              (status = 403, description = "the caller lacks users:manage", body = ErrorBody),
              (status = 409, description = "the login is taken (logins are unique whatever their case)", body = ErrorBody)))]
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
    // The login is unique across tenants whatever its case; the tenant's RLS cannot see
    // the others, so ask the database to refuse it (its unique index on lower(login) -> 409).
    let view = sqlx::query_as!(
        UserView,
        r#"INSERT INTO attune.identity (tenant_id, login, display_name, password_hash, role)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, login, display_name, tenant_id, role AS "role: Role", created_at"#,
        who.tenant_id,
        body.login,
        body.display_name,
        hash,
        body.role as Role,
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if super::auth::is_unique_violation(&e) {
            super::auth::login_taken(&body.login)
        } else {
            e.into()
        }
    })?;
    let data = json!({"login": view.login, "role": view.role});
    audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), "user.created", "identity", view.id, data).await?;
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
    responses((status = 200, body = Page<UserView>),
              (status = 403, description = "the caller lacks users:manage", body = ErrorBody)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<UserView>>, ApiError> {
    who.require(Permission::ManageUsers)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total =
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM attune.identity WHERE tenant_id = $1"#, who.tenant_id)
            .fetch_one(&mut *tx)
            .await?;
    let data = sqlx::query_as!(
        UserView,
        r#"SELECT id, login, display_name, tenant_id, role AS "role: Role", created_at
             FROM attune.identity WHERE tenant_id = $1 ORDER BY login, id LIMIT $2 OFFSET $3"#,
        who.tenant_id,
        limit,
        offset
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
}
