//! Helpers of the definition kinds' `save` hooks: finding a pack a tenant may write to,
//! checking that the author may run what a rule or workflow will run, PATCH merging, and
//! error mapping.

use attune_core::domain::PackRef;
use attune_core::pack::install::Mode;
use attune_core::pack::spec::SpecError;
use serde_json::Value;
use sqlx::PgConnection;

use crate::auth::Principal;
use crate::error::{excerpt, ApiError};

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
            .ok_or_else(|| ApiError::Unprocessable(format!("ref: invalid ref {:?}: expected pack.name", excerpt(r))))?,
        (None, None) => return Err(ApiError::Unprocessable("ref: missing: give ref as pack.name".into())),
    };
    PackRef::parse(raw).map_err(|e| ApiError::Unprocessable(format!("pack: {e}")))
}

/// The id of a pack the caller's tenant may add definitions to. A system pack is 403; a
/// pack the tenant cannot see is 422 (the body names a pack that does not exist).
pub async fn writable_pack(conn: &mut PgConnection, tenant_id: i64, pack: &PackRef) -> Result<i64, ApiError> {
    let row = sqlx::query!(
        "SELECT id, tenant_id FROM attune.pack WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL)
          ORDER BY tenant_id NULLS LAST LIMIT 1",
        pack.as_str(),
        tenant_id,
    )
    .fetch_optional(conn)
    .await?;
    match row {
        None => Err(ApiError::Unprocessable(format!(
            "pack: pack {:?} does not exist; register it first with POST /api/v1/packs",
            pack.as_str()
        ))),
        Some(row) if row.tenant_id.is_none() => Err(system_read_only("pack", pack.as_str())),
        Some(row) => Ok(row.id),
    }
}

/// 403 unless `who` may run each action of `refs` (resolved like a rule resolves them: the
/// tenant's own, else a system pack's; unknown ones are left to the caller). A rule or a
/// workflow task runs its action later on its author's say-so, so its author must be
/// allowed to run it: else an editor would run `core.local` (admin only) through a rule.
/// `context` says what would run it ("rule ops.r").
pub async fn may_run_all(
    conn: &mut PgConnection,
    who: &Principal,
    refs: &[String],
    context: &str,
) -> Result<(), ApiError> {
    if refs.is_empty() {
        return Ok(());
    }
    let actions = sqlx::query!(
        r#"SELECT DISTINCT ON (ref) ref AS "action_ref!", run_roles FROM attune.action
            WHERE ref = ANY($1) AND (tenant_id = $2 OR tenant_id IS NULL)
            ORDER BY ref, tenant_id NULLS LAST"#,
        refs,
        who.tenant_id
    )
    .fetch_all(conn)
    .await?;
    for action in actions {
        if let Some(why) = who.run_refusal(&action.action_ref, action.run_roles.as_deref()) {
            return Err(ApiError::Forbidden(format!(
                "{context}: {why}, and a {} may not have it run on their behalf",
                who.run_role()
            )));
        }
    }
    Ok(())
}

/// 422 naming the task when a workflow task runs an action the tenant cannot resolve (its
/// own, else a system pack's). `own_ref` (the workflow itself) counts as known: a workflow
/// that runs itself is stopped by the nesting limit when it runs.
pub async fn known_actions(
    conn: &mut PgConnection,
    tenant_id: i64,
    own_ref: &str,
    workflow: &Value,
) -> Result<(), ApiError> {
    let refs = workflow_actions(workflow);
    let found = sqlx::query_scalar!(
        r#"SELECT ref AS "action_ref!" FROM attune.action WHERE ref = ANY($1) AND (tenant_id = $2 OR tenant_id IS NULL)"#,
        &refs,
        tenant_id
    )
    .fetch_all(conn)
    .await?;
    let tasks = workflow.get("tasks").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (i, task) in tasks.iter().enumerate() {
        let Some(action) = task.get("action").and_then(Value::as_str) else { continue };
        if action != own_ref && !found.iter().any(|f| f == action) {
            let name = task.get("name").and_then(Value::as_str).unwrap_or("?");
            return Err(ApiError::Unprocessable(format!(
                "workflow.tasks[{i}] ({name}).action: action {action:?} does not exist; create it first"
            )));
        }
    }
    Ok(())
}

/// The action refs the tasks of a workflow definition run.
pub fn workflow_actions(workflow: &Value) -> Vec<String> {
    let tasks = workflow.get("tasks").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    tasks.iter().filter_map(|t| t.get("action").and_then(Value::as_str)).map(str::to_string).collect()
}

pub fn system_read_only(kind: &str, r: &str) -> ApiError {
    ApiError::Forbidden(format!("{kind} {r:?} belongs to a system pack, which is read-only"))
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

/// A unique violation on create as a 409 naming what exists; anything else as usual.
pub fn duplicate(kind: &str, r: &str) -> impl FnOnce(sqlx::Error) -> ApiError {
    let (kind, r) = (kind.to_string(), r.to_string());
    move |e| match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            ApiError::Conflict(format!("{kind} {:?} already exists", excerpt(&r)))
        }
        _ => e.into(),
    }
}

/// A 409 for deleting a trigger or action that rules still use, naming them.
pub fn in_use(kind: &str, r: &str, rules: &[String]) -> ApiError {
    ApiError::Conflict(format!("{kind} {r:?} is used by rules {}; delete or change them first", rules.join(", ")))
}

/// The id a definition write returned; None is a 409: on create, the ref exists; on an
/// update, the ref belongs to another pack.
pub fn written(kind: &str, r: &str, mode: Mode, id: Option<i64>) -> Result<i64, ApiError> {
    id.ok_or_else(|| match mode {
        Mode::Create => ApiError::Conflict(format!("{kind} {r:?} already exists")),
        Mode::Upsert => ApiError::Conflict(format!("{kind} {r} belongs to another pack")),
    })
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
