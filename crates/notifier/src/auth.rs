//! Who a socket is: its access token, checked as the API checks a bearer token (HS256,
//! not expired, a role that may read; an execution's own token only while that execution
//! runs). The socket's tenant is the token's: it never sees another tenant's changes.

use attune_core::domain::rbac::Permission;
use attune_core::domain::ExecutionStatus;
use attune_core::Context;
use sqlx::PgPool;

use crate::protocol::close;

/// An authenticated socket's caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub tenant_id: i64,
    pub identity_id: i64,
    pub login: String,
    /// Set for an execution's own token: the socket closes when that execution stops running.
    pub execution_id: Option<i64>,
    /// The token's `exp` (Unix seconds): the socket closes then (4401).
    pub expires_at: i64,
}

impl Caller {
    /// How long until the token expires (zero when it already has). A token is valid
    /// through the second of its `exp`.
    pub fn time_left(&self) -> std::time::Duration {
        let left_ms = (self.expires_at + 1).saturating_mul(1000) - chrono::Utc::now().timestamp_millis();
        std::time::Duration::from_millis(left_ms.max(0) as u64)
    }
}

/// Why a socket is not served; [`Refusal::code`] is the close code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// (The socket's close reason does not carry the database's error; the log does.)
    #[error("cannot check the token now; reconnect")]
    Database(#[source] sqlx::Error),
}

impl Refusal {
    pub fn code(&self) -> u16 {
        match self {
            Refusal::Unauthorized(_) => close::UNAUTHORIZED,
            Refusal::Forbidden(_) => close::FORBIDDEN,
            Refusal::Database(_) => close::INTERNAL_ERROR,
        }
    }
}

/// The caller `token` names, if it may read the stream.
pub async fn authenticate(ctx: &Context, token: &str) -> Result<Caller, Refusal> {
    let claims = ctx.tokens.verify(token.trim()).map_err(|e| Refusal::Unauthorized(e.0))?;
    let identity_id =
        claims.sub.parse::<i64>().map_err(|_| Refusal::Unauthorized("access token is malformed".into()))?;
    if !claims.role.allows(Permission::Read) {
        return Err(Refusal::Forbidden(format!("role '{}' lacks the 'read' permission", claims.role)));
    }
    if let Some(execution) = claims.execution_id {
        execution_token_in_force(&ctx.pool, execution, claims.tenant_id).await?;
    }
    Ok(Caller {
        tenant_id: claims.tenant_id,
        identity_id,
        login: claims.login,
        execution_id: claims.execution_id,
        expires_at: claims.exp,
    })
}

/// An execution's token works while its execution runs: it stops the moment the execution
/// ends (or is handed back to be retried), not only when it expires.
pub async fn execution_token_in_force(pool: &PgPool, execution: i64, tenant_id: i64) -> Result<(), Refusal> {
    let status = sqlx::query_file_scalar!("../../sql/notifier/execution_status.sql", execution, tenant_id)
        .fetch_optional(pool)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, execution, "notifier: cannot check an execution token");
            Refusal::Database(e)
        })?;
    match status {
        Some(status) if runs(status) => Ok(()),
        _ => Err(Refusal::Unauthorized(execution_ended(execution))),
    }
}

/// Whether an execution in `status` still holds its token.
pub fn runs(status: ExecutionStatus) -> bool {
    matches!(status, ExecutionStatus::Running | ExecutionStatus::Canceling | ExecutionStatus::Paused)
}

pub fn execution_ended(execution: i64) -> String {
    format!("this token belongs to execution {execution}, which is no longer running")
}
