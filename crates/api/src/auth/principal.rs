//! The authenticated caller of an `/api/v1` route.

use attune_core::audit::Actor;
use attune_core::domain::ExecutionStatus;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{Permission, Role};
use crate::error::ApiError;
use crate::state::ApiState;

#[derive(Debug, Clone)]
pub struct Principal {
    pub identity_id: i64,
    pub tenant_id: i64,
    pub role: Role,
    pub login: String,
    /// Set for an execution's own token.
    pub execution_id: Option<i64>,
}

impl Principal {
    /// The caller as the audit log names it.
    pub fn actor(&self) -> Actor {
        Actor::user(self.identity_id, &self.login)
    }

    /// The role a run is judged by: an execution's own token is an executor, whatever
    /// its claims say.
    pub fn run_role(&self) -> Role {
        if self.execution_id.is_some() {
            Role::Executor
        } else {
            self.role
        }
    }

    /// Why the caller may not run action `action_ref`, whose `run_roles` (None: every
    /// role with the run permission) are given: "action core.local may be run by admin only".
    pub fn run_refusal(&self, action_ref: &str, run_roles: Option<&[String]>) -> Option<String> {
        let roles = run_roles?;
        if roles.iter().any(|r| r == self.run_role().as_str()) {
            return None;
        }
        let allowed = if roles.is_empty() { "no role".to_string() } else { roles.join(" or ") };
        Some(format!("action {action_ref} may be run by {allowed} only"))
    }

    /// 403 unless the caller may run action `action_ref` by hand ([`Self::run_refusal`]).
    pub fn may_run(&self, action_ref: &str, run_roles: Option<&[String]>) -> Result<(), ApiError> {
        match self.run_refusal(action_ref, run_roles) {
            Some(why) => Err(ApiError::Forbidden(why)),
            None => Ok(()),
        }
    }

    /// 403 naming the missing permission unless the role has it.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "permission denied: role '{}' lacks the '{}' permission",
                self.role,
                permission.name()
            )))
        }
    }
}

/// An execution's token works while its execution runs: it stops the moment the
/// execution ends (or is handed back to be retried), not only when it expires.
async fn execution_token_in_force(state: &ApiState, execution: i64, tenant_id: i64) -> Result<(), ApiError> {
    let status = sqlx::query_scalar!(
        r#"SELECT status AS "status: ExecutionStatus" FROM attune.execution WHERE id = $1 AND tenant_id = $2"#,
        execution,
        tenant_id
    )
    .fetch_optional(state.pool())
    .await?;
    match status {
        Some(ExecutionStatus::Running | ExecutionStatus::Canceling | ExecutionStatus::Paused) => Ok(()),
        _ => Err(ApiError::Unauthorized(format!(
            "this token belongs to execution {execution}, which is no longer running"
        ))),
    }
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <access_token> header".into()))?;
    let value = header.to_str().map_err(|_| ApiError::Unauthorized("Authorization header is not valid text".into()))?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Unauthorized("Authorization header must be 'Bearer <access_token>'".into()))
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let claims = state.ctx.tokens.verify(token).map_err(|e| ApiError::Unauthorized(e.0))?;
        let identity_id =
            claims.sub.parse::<i64>().map_err(|_| ApiError::Unauthorized("access token is malformed".into()))?;
        let principal = Principal {
            identity_id,
            tenant_id: claims.tenant_id,
            role: claims.role,
            login: claims.login,
            execution_id: claims.execution_id,
        };
        if let Some(execution) = principal.execution_id {
            execution_token_in_force(state, execution, principal.tenant_id).await?;
        }
        // Every caller, admins included: a self-registered tenant's admin is anyone.
        if let Some(limit) = &state.rate_limit {
            // Execution tokens have no identity: each execution gets a bucket of its own.
            let key = principal.execution_id.map_or(identity_id, |execution| -execution);
            limit.check(key).map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
        }
        Ok(principal)
    }
}
