//! `/api/v1/packs`: register an empty pack or load one from a server directory, read,
//! update, delete, reload; uploads and git installs are [`delivery`]'s.
//!
//! A path load reads only directories under `packs.path_roots` (ATTUNE_PACK_PATH_ROOTS),
//! judged once the path is resolved (symbolic links, `..`); with no roots configured path
//! loads are refused. The loader then refuses any file of the pack that leads outside it.
//! A reload re-reads the pack's directory in place, or installs the new version its body
//! carries (an archive, or `{"git"}`) into a directory of its own.

pub mod delivery;

use std::path::{Component, Path, PathBuf};

use attune_core::audit;
use attune_core::domain::PackRef;
use attune_core::pack::install::Mode;
use attune_core::pack::{install, loader, PackError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Permission, Principal};
use crate::db;
use crate::definitions::routes::{change_routes, read_routes};
use crate::definitions::{
    self, duplicate, find, may_run_all, system_read_only, workflow_actions, Definition, Head, Key, Select,
};
use crate::error::{excerpt, ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath};
use crate::pagination::Page;
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(get_by_ref))
        .routes(routes!(reload))
        .merge(delivery::router())
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackView {
    pub id: i64,
    #[serde(rename = "ref")]
    pub pack_ref: String,
    pub label: Option<String>,
    pub version: String,
    pub description: Option<String>,
    /// System packs (core, ATTUNE_PACKS_DIR) are visible to every tenant and read-only.
    pub system: bool,
    /// The server directory it was loaded from, if any.
    pub path: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// What a PATCH may change.
const PATCHABLE: &[&str] = &["label", "version", "description"];

impl Definition for PackView {
    const KIND: &'static str = "pack";
    const SPEC_FIELDS: &'static [&'static str] = &["ref", "label", "version", "description"];
    type Filter = ListParams;
    type Spec = CreatePack;

    fn head(&self) -> Head<'_> {
        Head { id: self.id, reference: &self.pack_ref, system: self.system }
    }

    async fn select(conn: &mut PgConnection, q: Select<'_, ListParams>) -> Result<Vec<Self>, sqlx::Error> {
        sqlx::query_file_as!(
            PackView,
            "../../sql/api/definitions/pack_select.sql",
            q.tenant_id,
            q.id,
            q.reference,
            q.limit,
            q.offset
        )
        .fetch_all(conn)
        .await
    }

    async fn count(conn: &mut PgConnection, tenant_id: i64, _: &ListParams) -> Result<i64, sqlx::Error> {
        sqlx::query_file_scalar!("../../sql/api/definitions/pack_count.sql", tenant_id).fetch_one(conn).await
    }

    /// Registers an empty pack, loads a pack directory (create), or changes a pack's label,
    /// version or description (PATCH).
    async fn save(conn: &mut PgConnection, who: &Principal, body: CreatePack, mode: Mode) -> Result<i64, ApiError> {
        let version = body.version.unwrap_or_else(|| "0.0.0".into());
        if version.trim().is_empty() || version.len() > 64 {
            return Err(ApiError::Unprocessable("version: must be a non-empty version string such as 1.0.0".into()));
        }
        let Some(raw) = body.pack_ref else {
            return Err(ApiError::Unprocessable("ref: missing: give ref (and version) or path".into()));
        };
        let pack_ref = PackRef::parse(&raw).map_err(|e| ApiError::Unprocessable(format!("ref: {e}")))?;
        if mode == Mode::Upsert {
            let id = sqlx::query_scalar!(
                "UPDATE attune.pack SET label = $3, version = $4, description = $5, updated_at = now()
                  WHERE ref = $1 AND tenant_id = $2
                 RETURNING id",
                pack_ref.as_str(),
                who.tenant_id,
                body.label,
                version,
                body.description,
            )
            .fetch_optional(conn)
            .await?;
            return id.ok_or_else(|| ApiError::NotFound(format!("pack {:?} not found", excerpt(pack_ref.as_str()))));
        }
        refuse_taken(conn, who.tenant_id, pack_ref.as_str()).await?;
        let id = sqlx::query_scalar!(
            "INSERT INTO attune.pack (tenant_id, ref, label, version, description) VALUES ($1, $2, $3, $4, $5)
             RETURNING id",
            who.tenant_id,
            pack_ref.as_str(),
            body.label,
            version,
            body.description,
        )
        .fetch_one(conn)
        .await
        .map_err(duplicate("pack", pack_ref.as_str()))?;
        Ok(id)
    }

    /// Deletes the pack and every definition in it, unless rules of other packs use them.
    async fn remove(conn: &mut PgConnection, this: &Self) -> Result<(), ApiError> {
        let id = this.id;
        let outside = sqlx::query_scalar!(
            "SELECT r.ref FROM attune.rule r
               JOIN attune.action a ON a.id = r.action_id
               JOIN attune.trigger t ON t.id = r.trigger_id
              WHERE r.pack_id <> $1 AND (a.pack_id = $1 OR t.pack_id = $1) ORDER BY r.ref",
            id
        )
        .fetch_all(&mut *conn)
        .await?;
        if !outside.is_empty() {
            return Err(ApiError::Conflict(format!(
                "pack {:?} is used by rules of other packs: {}; delete or change them first",
                this.pack_ref,
                outside.join(", ")
            )));
        }
        // The pack's events and sensor leases first, in the order the rule engine and
        // the sensor service take them (event, then action; lease, then sensor).
        sqlx::query!(
            "SELECT 1 AS locked FROM attune.event
              WHERE trigger_id IN (SELECT id FROM attune.trigger WHERE pack_id = $1) FOR UPDATE",
            id
        )
        .fetch_all(&mut *conn)
        .await?;
        sqlx::query!(
            "DELETE FROM attune.sensor_lease WHERE sensor_id IN (SELECT id FROM attune.sensor WHERE pack_id = $1)",
            id
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query!("DELETE FROM attune.rule WHERE pack_id = $1", id).execute(&mut *conn).await?;
        sqlx::query!("DELETE FROM attune.pack WHERE id = $1", id).execute(&mut *conn).await?;
        Ok(())
    }

    fn created_data(&self) -> Value {
        match &self.path {
            Some(path) => json!({"ref": self.pack_ref, "path": path}),
            None => json!({"ref": self.pack_ref}),
        }
    }

    fn check_patch(patch: &Value) -> Result<(), ApiError> {
        match patch.as_object().and_then(|map| map.keys().find(|k| !PATCHABLE.contains(&k.as_str()))) {
            Some(bad) => Err(ApiError::Unprocessable(format!(
                "{bad}: cannot be changed on a pack; a PATCH may change {} (reload a pack to change its content)",
                PATCHABLE.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

read_routes! {
    view: PackView, params: ListParams, tag: "packs", what: "pack",
    list: "/api/v1/packs", one: "/api/v1/packs/{id}", by_ref: "/api/v1/packs/ref/{ref}"
}

change_routes! {
    view: PackView, tag: "packs", path: "/api/v1/packs/{id}",
    patch_doc: "Changes a pack's `label`, `version` or `description` (`null` clears a label or description).",
    delete_doc: "Deletes a pack and every definition in it, unless rules of other packs use them (409 naming them)."
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePack {
    /// Registers an empty pack with this ref...
    #[serde(rename = "ref")]
    pack_ref: Option<String>,
    label: Option<String>,
    version: Option<String>,
    description: Option<String>,
    /// ...or loads the pack directory at this path on the server.
    path: Option<String>,
}

fn pack_error(e: PackError) -> ApiError {
    match e {
        PackError::Invalid(_) => ApiError::Unprocessable(e.to_string()),
        PackError::Db(db) => db.into(),
    }
}

/// The directory a path load may read for `raw`, resolved: 403 when no roots are
/// configured or when it is not under one (the same answer whether it exists or not, so
/// nothing outside the roots can be probed); 422 when it does not exist under a root.
fn allowed_dir(state: &ApiState, raw: &str) -> Result<PathBuf, ApiError> {
    let configured = &state.ctx.config.packs.path_roots;
    if configured.is_empty() {
        return Err(ApiError::Forbidden(
            "path: loading packs from server directories is off on this server: no packs.path_roots \
             (ATTUNE_PACK_PATH_ROOTS) are configured; register an empty pack with ref and version instead"
                .into(),
        ));
    }
    let path = Path::new(raw);
    if !path.is_absolute() {
        return Err(ApiError::Unprocessable(format!(
            "path: {:?} must be an absolute directory path on the server",
            excerpt(raw)
        )));
    }
    let roots: Vec<PathBuf> = configured.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect();
    let under_a_root = |p: &Path| roots.iter().any(|r| p.starts_with(r));
    let outside = || {
        ApiError::Forbidden(format!(
            "path: {} is not under the directories packs may be loaded from (packs.path_roots, ATTUNE_PACK_PATH_ROOTS)",
            excerpt(raw)
        ))
    };
    match std::fs::canonicalize(path) {
        Ok(real) if under_a_root(&real) => Ok(real),
        Ok(_) => Err(outside()),
        Err(e) => match resolved_prefix(path) {
            Some(guess) if under_a_root(&guess) => Err(ApiError::Unprocessable(format!("path: {}: {e}", excerpt(raw)))),
            _ => Err(outside()),
        },
    }
}

/// Where a path that cannot be resolved whole would be: its longest resolvable ancestor,
/// resolved, with the rest appended; None when the rest climbs with `..`.
fn resolved_prefix(path: &Path) -> Option<PathBuf> {
    let mut ancestor = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(ancestor) {
            if rest.iter().any(|c| matches!(c, Component::ParentDir)) {
                return None;
            }
            return Some(rest.iter().rev().fold(real, |acc, c| acc.join(c)));
        }
        rest.push(ancestor.components().next_back()?);
        ancestor = ancestor.parent()?;
    }
}

/// Reads a pack directory (already resolved under a root) off the async workers; the
/// loader checks the roots again on the directory it actually reads.
async fn load_dir(state: &ApiState, path: PathBuf) -> Result<loader::PackDefinition, ApiError> {
    let roots = state.ctx.config.packs.path_roots.clone();
    tokio::task::spawn_blocking(move || loader::load_within(&path, &roots))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(pack_error)
}

/// 403 unless the caller may run every action the pack's rules and workflow tasks run
/// (checked after the install, inside its transaction, so the refs resolve as they will).
async fn may_run_pack(conn: &mut PgConnection, who: &Principal, def: &loader::PackDefinition) -> Result<(), ApiError> {
    for rule in &def.rules {
        let context = format!("rule {}", rule.rule_ref.as_str());
        may_run_all(conn, who, &[rule.action.as_str().to_string()], &context).await?;
    }
    for action in &def.actions {
        if let Some(workflow) = &action.workflow {
            let context = format!("workflow of {}", action.action_ref.as_str());
            may_run_all(conn, who, &workflow_actions(workflow), &context).await?;
        }
    }
    Ok(())
}

/// Registers an empty pack (`ref`, `version`, ...), or loads a pack directory from the
/// server (`path`, under one of `packs.path_roots`): all of it, or nothing with every
/// problem listed.
#[utoipa::path(post, path = "/api/v1/packs", tag = "packs", request_body = CreatePack, security(("bearer" = [])),
    responses((status = 201, body = PackView),
              (status = 403, description = "the role lacks definitions:write; path loads are off (no ATTUNE_PACK_PATH_ROOTS) or the path is outside them; a rule or workflow of the pack runs an action the caller may not run", body = ErrorBody),
              (status = 409, description = "the pack ref exists (the tenant's or a system pack's)", body = ErrorBody)))]
async fn create(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(body): ApiJson<CreatePack>,
) -> Result<(StatusCode, Json<PackView>), ApiError> {
    let Some(path) = body.path.clone() else {
        return definitions::create(&state, &who, body).await;
    };
    who.require(Permission::WriteDefinitions)?;
    if body.pack_ref.is_some() || body.version.is_some() || body.label.is_some() || body.description.is_some() {
        return Err(ApiError::Unprocessable(
            "path: give either path (the pack.yaml says the rest) or ref/version/label/description, not both".into(),
        ));
    }
    let dir = allowed_dir(&state, &path)?;
    let def = load_dir(&state, dir).await?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    refuse_taken(&mut tx, who.tenant_id, def.meta.pack_ref.as_str()).await?;
    let installed = install::install(&mut tx, Some(who.tenant_id), &def, true).await.map_err(pack_error)?;
    may_run_pack(&mut tx, &who, &def).await?;
    let view = find::<PackView>(&mut tx, &who, Key::Id(installed.pack_id)).await?;
    audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), "pack.created", "pack", view.id, view.created_data())
        .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A pack ref is taken when the tenant or a system pack has it.
async fn refuse_taken(conn: &mut PgConnection, tenant_id: i64, r: &str) -> Result<(), ApiError> {
    let system = sqlx::query_scalar!(
        r#"SELECT tenant_id IS NULL AS "system!" FROM attune.pack
            WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL) LIMIT 1"#,
        r,
        tenant_id
    )
    .fetch_optional(conn)
    .await?;
    match system {
        None => Ok(()),
        Some(true) => Err(ApiError::Conflict(format!(
            "pack {:?} already exists as a system pack; choose another ref",
            excerpt(r)
        ))),
        Some(false) => Err(ApiError::Conflict(format!(
            "pack {:?} already exists; reload it with POST /api/v1/packs/{}/reload (with the new version's .tar.gz, \
             or {{\"git\": URL}}, as the body for an uploaded or git-installed pack)",
            excerpt(r),
            excerpt(r)
        ))),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    #[serde(flatten)]
    pack: PackView,
    /// False when the directory's content was unchanged since the last load.
    changed: bool,
    /// Where the new version came from, when the reload carried one.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<delivery::Source>,
}

/// Re-reads a pack's directory and applies it in one transaction: definitions are
/// updated in place (ids and webhook URLs survive), removed ones are deleted. A bad
/// directory changes nothing. A path-loaded pack's directory must still be under
/// `packs.path_roots`. With a body — a `.tar.gz` (Content-Type application/gzip) or
/// `{"git": URL, "ref"?}` — the body is the new version, checked and installed like an
/// upload into a directory of its own: executions already running finish on the old
/// version's files, later ones run the new.
#[utoipa::path(post, path = "/api/v1/packs/{key}/reload", tag = "packs", params(("key" = String, Path, description = "pack ref or id")),
    request_body(content((Option<delivery::GitInstall> = "application/json"), (String = "application/gzip")),
                 description = "none (or null): re-read the pack's directory; a .tar.gz or {\"git\", \"ref\"?}: a new version"),
    security(("bearer" = [])),
    responses((status = 200, body = Reloaded),
              (status = 403, description = "the role lacks definitions:write; a system pack; the directory is no longer under ATTUNE_PACK_PATH_ROOTS; a rule or workflow runs an action the caller may not run", body = ErrorBody),
              (status = 404, description = "no such pack visible to the caller", body = ErrorBody),
              (status = 409, description = "the pack was registered without a directory", body = ErrorBody),
              (status = 413, description = "a new version over packs.max_upload_bytes, packs.max_files or packs.max_unpacked_bytes", body = ErrorBody)))]
async fn reload(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Reloaded>, delivery::Refusal> {
    who.require(Permission::WriteDefinitions)?;
    let incoming = delivery::reload_body(&headers, body).await?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let pack = match find::<PackView>(&mut tx, &who, Key::Ref(&key)).await {
        Ok(p) => p,
        Err(ApiError::NotFound(m)) => match key.parse::<i64>() {
            Ok(id) => find::<PackView>(&mut tx, &who, Key::Id(id)).await?,
            Err(_) => return Err(ApiError::NotFound(m).into()),
        },
        Err(e) => return Err(e.into()),
    };
    if pack.system {
        return Err(system_read_only("pack", &pack.pack_ref).into());
    }
    if pack.path.is_none() {
        return Err(ApiError::Conflict(format!(
            "pack {:?} was registered without a directory; there is nothing to reload (delete it and upload or \
             install the pack instead)",
            pack.pack_ref
        ))
        .into());
    }
    if let Some(incoming) = incoming {
        // The new version is read and checked outside any transaction.
        drop(tx);
        let checked = delivery::receive(&state, incoming).await?;
        let delivered = delivery::commit_version(&state, &who, checked, Some(&pack)).await?;
        return Ok(Json(Reloaded { pack: delivered.pack, changed: delivered.changed, source: Some(delivered.source) }));
    }
    // Like a delivery, under the pack's delivery lock, reading where the pack is now: a
    // re-read never puts back a directory a concurrent delivery has just replaced.
    sqlx::query_file!("../../sql/api/pack_delivery_lock.sql", who.tenant_id, pack.pack_ref).execute(&mut *tx).await?;
    let Some(path) = find::<PackView>(&mut tx, &who, Key::Id(pack.id)).await?.path else {
        return Err(ApiError::Conflict(format!("pack {:?} no longer has a directory", pack.pack_ref)).into());
    };
    let def = match delivery::reread_stored(&state, &path).await? {
        Some(def) => def,
        None => {
            let dir = allowed_dir(&state, &path)?;
            load_dir(&state, dir).await?
        }
    };
    if def.meta.pack_ref.as_str() != pack.pack_ref {
        return Err(ApiError::Unprocessable(format!(
            "{path}/pack.yaml: ref: the directory now holds pack {:?}, not {:?}",
            def.meta.pack_ref.as_str(),
            pack.pack_ref
        ))
        .into());
    }
    let installed = install::install(&mut tx, Some(who.tenant_id), &def, false).await.map_err(pack_error)?;
    may_run_pack(&mut tx, &who, &def).await?;
    if installed.changed {
        let data = json!({"ref": pack.pack_ref, "version": def.meta.version});
        audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), "pack.reloaded", "pack", pack.id, data).await?;
    }
    let view = find::<PackView>(&mut tx, &who, Key::Id(pack.id)).await?;
    tx.commit().await?;
    Ok(Json(Reloaded { pack: view, changed: installed.changed, source: None }))
}
