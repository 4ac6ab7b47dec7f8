//! Appends to the audit log, in the same transaction as the change it records.

use serde_json::Value;
use sqlx::PgConnection;

use crate::auth::Principal;
use crate::error::ApiError;

pub async fn record(
    conn: &mut PgConnection,
    who: &Principal,
    action: &str,
    entity_type: &str,
    entity_id: impl ToString,
    data: Value,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO attune.audit_log (tenant_id, actor_type, actor_id, actor_login, action, entity_type, entity_id, data)
         VALUES ($1, 'user', $2, $3, $4, $5, $6, $7)",
    )
    .bind(who.tenant_id)
    .bind(who.identity_id.to_string())
    .bind(&who.login)
    .bind(action)
    .bind(entity_type)
    .bind(entity_id.to_string())
    .bind(data)
    .execute(conn)
    .await?;
    Ok(())
}
