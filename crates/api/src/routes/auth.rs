//! `/auth/*`: register, login, refresh (rotating), me.

use attune_core::audit::{self, Actor};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::credentials::{check_login, check_password, hash_in_background};
use crate::auth::tokens::{hash_refresh_token, random_token};
use crate::auth::{Principal, Role};
use crate::error::{excerpt, ApiError, ErrorBody};
use crate::extract::{ApiJson, ClientIp};
use crate::rate_limit::Door;
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(register)).routes(routes!(login)).routes(routes!(refresh)).routes(routes!(me))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    login: String,
    password: String,
    display_name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    login: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    access_token: String,
    refresh_token: String,
    token_type: &'static str,
    /// Seconds until the access token expires.
    expires_in: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub id: i64,
    pub login: String,
    pub tenant_id: i64,
    pub role: Role,
}

/// Creates a new tenant whose first user is its admin. Off unless `auth.allow_registration`;
/// throttled per client address and per login like `/auth/login`.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = Me),
              (status = 403, description = "registration is disabled", body = ErrorBody),
              (status = 409, description = "the login is taken (logins are unique whatever their case)", body = ErrorBody),
              (status = 429, description = "too many attempts from this address or for this login; see Retry-After",
               body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait")))))]
async fn register(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<Me>), ApiError> {
    state.auth_throttle.check(Door::Register, ip, &body.login)?;
    if !state.ctx.config.auth.allow_registration {
        return Err(ApiError::Forbidden(
            "registration is disabled on this server (auth.allow_registration, ATTUNE_ALLOW_REGISTRATION=true to open it); \
             an admin adds users with POST /api/v1/users"
                .into(),
        ));
    }
    check_login(&body.login)?;
    check_password(&body.password)?;
    let hash = hash_in_background(body.password).await?;
    let mut tx = state.pool().begin().await?;
    let taken = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM attune.identity WHERE lower(login) = lower($1)) AS "taken!""#,
        body.login
    )
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Err(login_taken(&body.login));
    }
    // The tenant is named after its first user; a clash (a tenant named like this login)
    // gets a random suffix.
    let tenant_id = match insert_tenant(&mut tx, &body.login).await? {
        Some(id) => id,
        None => {
            // Keep the name within bounds, and try a few suffixes before giving up.
            let base: String = body.login.chars().take(100).collect();
            let mut found = None;
            for _ in 0..5 {
                let name = format!("{base}-{}", random_token(6).to_lowercase());
                if let Some(id) = insert_tenant(&mut tx, &name).await? {
                    found = Some(id);
                    break;
                }
            }
            found.ok_or_else(|| ApiError::Conflict("could not find a free tenant name; try again".into()))?
        }
    };
    let id = sqlx::query_scalar!(
        "INSERT INTO attune.identity (tenant_id, login, display_name, password_hash, role)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        tenant_id,
        body.login,
        body.display_name,
        hash,
        Role::Admin as Role,
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { login_taken(&body.login) } else { e.into() })?;
    let actor = Actor::user(id, &body.login);
    audit::record_one(&mut tx, Some(tenant_id), &actor, "tenant.registered", "tenant", tenant_id, json!({})).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(Me { id, login: body.login, tenant_id, role: Role::Admin })))
}

/// The 409 of a login that exists already, in any case.
pub(crate) fn login_taken(login: &str) -> ApiError {
    ApiError::Conflict(format!("login {:?} is taken (logins are unique whatever their case)", excerpt(login)))
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// A new tenant named `name`; None when the name is taken.
async fn insert_tenant(conn: &mut PgConnection, name: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("INSERT INTO attune.tenant (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id", name)
        .fetch_optional(conn)
        .await
}

const BAD_CREDENTIALS: &str = "invalid login or password";

/// Exchanges a login (any case) and password for a token pair. Unknown logins and wrong
/// passwords get the same answer. Throttled: 10 attempts a minute per client address and
/// 5 per login, whoever the user; trying again while told to wait doubles the wait.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenPair),
              (status = 401, description = "invalid login or password", body = ErrorBody),
              (status = 429, description = "too many attempts from this address or for this login; see Retry-After",
               body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait")))))]
async fn login(
    State(state): State<ApiState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    state.auth_throttle.check(Door::Login, ip, &body.login)?;
    let row = sqlx::query!(
        r#"SELECT id, tenant_id, login, role AS "role: Role", password_hash, disabled
             FROM attune.identity WHERE lower(login) = lower($1)"#,
        body.login
    )
    .fetch_optional(state.pool())
    .await?;
    // Verify against a real hash even for unknown logins, so timing does not tell them apart.
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| attune_core::crypto::hash_password("not a real password")).clone();
    let hash = row.as_ref().map_or(dummy, |r| r.password_hash.clone());
    let password = body.password;
    let verified = tokio::task::spawn_blocking(move || attune_core::crypto::verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?;
    let Some(row) = row else {
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    };
    if !verified || row.disabled {
        return Err(ApiError::Unauthorized(BAD_CREDENTIALS.into()));
    }
    let mut tx = state.pool().begin().await?;
    // The token names the login as it was registered, whatever case was typed.
    let pair = issue_pair(&state, &mut tx, row.id, row.tenant_id, row.role, &row.login, None).await?;
    tx.commit().await?;
    Ok(Json(pair))
}

/// Stores a new refresh token in `conn`'s transaction (linked from the one it replaces)
/// and signs the access token.
async fn issue_pair(
    state: &ApiState,
    conn: &mut PgConnection,
    identity_id: i64,
    tenant_id: i64,
    role: Role,
    login: &str,
    replaces: Option<i64>,
) -> Result<TokenPair, ApiError> {
    let refresh = random_token(32);
    let new_id = sqlx::query_scalar!(
        "INSERT INTO attune.refresh_token (identity_id, token_hash, expires_at)
         VALUES ($1, $2, now() + make_interval(secs => $3)) RETURNING id",
        identity_id,
        hash_refresh_token(&refresh),
        state.ctx.tokens.refresh_ttl_seconds as f64,
    )
    .fetch_one(&mut *conn)
    .await?;
    if let Some(old) = replaces {
        sqlx::query!("UPDATE attune.refresh_token SET replaced_by = $2 WHERE id = $1", old, new_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(TokenPair {
        access_token: state.ctx.tokens.issue(identity_id, tenant_id, role, login),
        refresh_token: refresh,
        token_type: "Bearer",
        expires_in: state.ctx.tokens.access_ttl_seconds,
    })
}

/// Exchanges a refresh token for a new pair; the old refresh token is revoked.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenPair),
              (status = 401, description = "the refresh token is invalid, expired or already used", body = ErrorBody)))]
async fn refresh(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let hash = hash_refresh_token(&body.refresh_token);
    // Revoking the old token and storing its successor commit together; and the revoke is
    // one statement, so two concurrent uses of the same token cannot both succeed.
    let mut tx = state.pool().begin().await?;
    let used = sqlx::query!(
        r#"UPDATE attune.refresh_token r SET revoked_at = now()
             FROM attune.identity i
            WHERE r.token_hash = $1 AND r.revoked_at IS NULL AND r.expires_at > now() AND i.id = r.identity_id
        RETURNING r.id AS token_id, i.id AS identity_id, i.tenant_id, i.role AS "role: Role", i.login, i.disabled"#,
        hash
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(used) = used else {
        tx.rollback().await?;
        // A revoked token presented again: it leaked or was replayed. End every session of that user.
        let revoked = sqlx::query!(
            "UPDATE attune.refresh_token SET revoked_at = now()
              WHERE revoked_at IS NULL
                AND identity_id = (SELECT identity_id FROM attune.refresh_token
                                    WHERE token_hash = $1 AND revoked_at IS NOT NULL)",
            hash
        )
        .execute(state.pool())
        .await?;
        if revoked.rows_affected() > 0 {
            tracing::warn!("a revoked refresh token was reused; all refresh tokens of its user were revoked");
        }
        return Err(ApiError::Unauthorized("refresh token is invalid, expired or already used".into()));
    };
    if used.disabled {
        return Err(ApiError::Unauthorized("refresh token is invalid, expired or already used".into()));
    }
    let pair =
        issue_pair(&state, &mut tx, used.identity_id, used.tenant_id, used.role, &used.login, Some(used.token_id))
            .await?;
    tx.commit().await?;
    Ok(Json(pair))
}

/// The caller.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401)))]
async fn me(who: Principal) -> Json<Me> {
    Json(Me { id: who.identity_id, login: who.login, tenant_id: who.tenant_id, role: who.role })
}
