//! `GET /api/v1/audit`: the tenant's audit trail (admin only), newest first.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Permission, Principal};
use crate::db;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::pagination::{self, Page};
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list))
}

struct AuditRow {
    id: i64,
    timestamp: DateTime<Utc>,
    tenant_id: Option<i64>,
    actor_type: String,
    actor_id: Option<String>,
    actor_login: Option<String>,
    action: String,
    entity_type: String,
    entity_id: Option<String>,
    data: Value,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub timestamp: DateTime<Utc>,
    pub tenant_id: Option<i64>,
    /// `{"type": "user|service|worker", "id", "login"}`
    pub actor: Value,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub data: Value,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    entity_type: Option<String>,
    entity_id: Option<String>,
    action: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Audit entries of the caller's tenant, newest first, filtered by entity or action.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<AuditEntry>), (status = 403)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    who.require(Permission::ReadAudit)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM attune.audit_log
            WHERE tenant_id = $1 AND ($2::text IS NULL OR entity_type = $2)
              AND ($3::text IS NULL OR entity_id = $3) AND ($4::text IS NULL OR action = $4)"#,
        who.tenant_id,
        q.entity_type,
        q.entity_id,
        q.action
    )
    .fetch_one(&mut *tx)
    .await?;
    let rows = sqlx::query_as!(
        AuditRow,
        "SELECT id, timestamp, tenant_id, actor_type, actor_id, actor_login, action, entity_type, entity_id, data
           FROM attune.audit_log
          WHERE tenant_id = $1 AND ($2::text IS NULL OR entity_type = $2)
            AND ($3::text IS NULL OR entity_id = $3) AND ($4::text IS NULL OR action = $4)
          ORDER BY id DESC LIMIT $5 OFFSET $6",
        who.tenant_id,
        q.entity_type,
        q.entity_id,
        q.action,
        limit,
        offset
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let data = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            timestamp: r.timestamp,
            tenant_id: r.tenant_id,
            actor: json!({"type": r.actor_type, "id": r.actor_id, "login": r.actor_login}),
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            data: r.data,
        })
        .collect();
    Ok(Json(Page { data, total, limit, offset }))
}
