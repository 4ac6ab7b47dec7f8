//! What the definition routes (packs, actions, triggers, rules) share: finding a pack a
//! tenant may write to, write checks on existing rows, PATCH merging, and error mapping.

use attune_core::domain::PackRef;
use attune_core::pack::spec::SpecError;
use serde_json::Value;
use sqlx::PgConnection;

use axum::http::StatusCode;

use crate::app::ApiState;
use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::{audit, db};

/// A spec validation error naming the field: 400 for a template that does not compile
/// (criteria, parameter templates), 422 for any other bad value.
pub fn invalid(e: SpecError) -> ApiError {
    let message = format!("{}: {}", e.field, e.message);
    if e.message.contains("syntax error") {
        ApiError::BadRequest(message)
    } else {
        ApiError::Unprocessable(message)
    }
}

/// The pack part of a definition body: `pack`, else the prefix of `ref`.
pub fn pack_ref_of(given_ref: Option<&str>, pack: Option<&str>) -> Result<PackRef, ApiError> {
    let raw = match (pack, given_ref) {
        (Some(p), _) => p,
        (None, Some(r)) => r
            .split_once('.')
            .map(|(p, _)| p)
            .ok_or_else(|| ApiError::Unprocessable(format!("ref: invalid ref {r:?}: expected pack.name")))?,
        (None, None) => return Err(ApiError::Unprocessable("ref: missing: give ref as pack.name".into())),
    };
    PackRef::parse(raw).map_err(|e| ApiError::Unprocessable(format!("pack: {e}")))
}

/// The id of a pack the caller's tenant may add definitions to. A system pack is 403; a
/// pack the tenant cannot see is 422 (the body names a pack that does not exist).
pub async fn writable_pack(conn: &mut PgConnection, tenant_id: i64, pack: &PackRef) -> Result<i64, ApiError> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, tenant_id FROM attune.pack WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL)
         ORDER BY tenant_id NULLS LAST LIMIT 1",
    )
    .bind(pack.as_str())
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?;
    match row {
        None => Err(ApiError::Unprocessable(format!(
            "pack: pack {:?} does not exist; register it first with POST /api/v1/packs",
            pack.as_str()
        ))),
        Some((_, None)) => Err(system_read_only("pack", pack.as_str())),
        Some((id, Some(_))) => Ok(id),
    }
}

pub fn system_read_only(kind: &str, r: &str) -> ApiError {
    ApiError::Forbidden(format!("{kind} {r:?} belongs to a system pack, which is read-only"))
}

/// Checks that row `id` of `table` exists for the caller and is theirs to change:
/// 404 when it does not exist (or is another tenant's), 403 when it is a system pack's.
/// Returns its ref.
pub async fn ensure_writable(
    conn: &mut PgConnection,
    table: &str,
    tenant_id: i64,
    id: i64,
) -> Result<String, ApiError> {
    let row: Option<(String, Option<i64>)> = sqlx::query_as(&format!(
        "SELECT ref, tenant_id FROM attune.{table} WHERE id = $1 AND (tenant_id = $2 OR tenant_id IS NULL)"
    ))
    .bind(id)
    .bind(tenant_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        None => Err(ApiError::not_found(table, id)),
        Some((r, None)) => Err(system_read_only(table, &r)),
        Some((r, Some(_))) => {
            // Lock it (RLS lets a tenant lock only its own rows, hence the two steps), so
            // concurrent PATCHes of one definition apply one after the other.
            sqlx::query(&format!("SELECT 1 FROM attune.{table} WHERE id = $1 FOR UPDATE"))
                .bind(id)
                .execute(conn)
                .await?;
            Ok(r)
        }
    }
}

/// Applies a PATCH body to the current definition (its view as JSON) and keeps only the
/// fields of the create body, so the result can be validated exactly like a create.
/// Top-level fields are replaced whole (a new `parameters` replaces the old one).
pub fn patched(current: Value, patch: &Value, spec_fields: &[&str]) -> Result<Value, ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::Unprocessable("the PATCH body must be a JSON object".into()));
    };
    if let Some(r) = patch.get("ref") {
        if current.get("ref") != Some(r) {
            return Err(ApiError::Unprocessable("ref: cannot be changed; create a new definition instead".into()));
        }
    }
    let mut merged = serde_json::Map::new();
    if let Value::Object(current) = current {
        for (k, v) in current {
            if spec_fields.contains(&k.as_str()) && !v.is_null() {
                merged.insert(k, v);
            }
        }
    }
    for (k, v) in patch {
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(merged))
}

/// Refs of the rules that use a trigger or action, for a 409 that says what to remove first.
async fn rules_using(conn: &mut PgConnection, column: &str, id: i64) -> Result<Vec<String>, ApiError> {
    Ok(sqlx::query_scalar(&format!("SELECT ref FROM attune.rule WHERE {column} = $1 ORDER BY ref"))
        .bind(id)
        .fetch_all(conn)
        .await?)
}

/// A unique violation on create as a 409 naming what exists; anything else as usual.
pub fn duplicate(kind: &str, r: &str) -> impl FnOnce(sqlx::Error) -> ApiError {
    let (kind, r) = (kind.to_string(), r.to_string());
    move |e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            ApiError::Conflict(format!("{kind} {r:?} already exists"))
        }
        _ => e.into(),
    }
}

/// Deletes definition `id` of `table` (`action`, `trigger` or `rule`): 404 when the caller
/// cannot see it, 403 for a system pack's, and for actions and triggers 409 naming the
/// rules that still use it. Audited as `<table>.deleted`.
pub async fn delete_definition(
    state: &ApiState,
    who: &Principal,
    table: &str,
    id: i64,
) -> Result<StatusCode, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let r = ensure_writable(&mut tx, table, who.tenant_id, id).await?;
    if table != "rule" {
        let rules = rules_using(&mut tx, &format!("{table}_id"), id).await?;
        if !rules.is_empty() {
            return Err(ApiError::Conflict(format!(
                "{table} {r:?} is used by rules {}; delete or change them first",
                rules.join(", ")
            )));
        }
    }
    sqlx::query(&format!("DELETE FROM attune.{table} WHERE id = $1")).bind(id).execute(&mut *tx).await?;
    audit::record(&mut tx, who, &format!("{table}.deleted"), table, id, serde_json::json!({"ref": r})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn patch_keeps_spec_fields_and_replaces_given_ones() {
        let current = json!({"id": 1, "ref": "p.a", "runner_type": "shell", "command": "x", "timeout_seconds": null});
        let out = super::patched(
            current,
            &json!({"command": "y", "description": "d"}),
            &["ref", "runner_type", "command", "description", "timeout_seconds"],
        )
        .unwrap();
        assert_eq!(out, json!({"ref": "p.a", "runner_type": "shell", "command": "y", "description": "d"}));
        assert!(super::patched(json!({"ref": "p.a"}), &json!({"ref": "p.b"}), &["ref"]).is_err());
    }
}
