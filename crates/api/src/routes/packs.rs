//! `/api/v1/packs`: register an empty pack or load one from a server directory, read,
//! update, delete, reload.

use std::path::PathBuf;

use attune_core::audit;
use attune_core::domain::PackRef;
use attune_core::pack::install::Mode;
use attune_core::pack::{install, loader, PackError};
use axum::extract::State;
use axum::http::StatusCode;
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
use crate::definitions::{self, duplicate, find, system_read_only, Definition, Head, Key, Select};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::pagination::Page;
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(get_by_ref))
        .routes(routes!(reload))
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
            return id.ok_or_else(|| ApiError::NotFound(format!("pack {:?} not found", pack_ref.as_str())));
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

/// Reads a pack directory off the async workers.
async fn load_dir(path: PathBuf) -> Result<loader::PackDefinition, ApiError> {
    tokio::task::spawn_blocking(move || loader::load(&path))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(pack_error)
}

/// Registers an empty pack (`ref`, `version`, ...), or loads a pack directory from the
/// server (`path`): all of it, or nothing with every problem listed.
#[utoipa::path(post, path = "/api/v1/packs", tag = "packs", request_body = CreatePack, security(("bearer" = [])),
    responses((status = 201, body = PackView), (status = 409), (status = 422)))]
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
    let def = load_dir(PathBuf::from(&path)).await?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    refuse_taken(&mut tx, who.tenant_id, def.meta.pack_ref.as_str()).await?;
    let installed = install::install(&mut tx, Some(who.tenant_id), &def, true).await.map_err(pack_error)?;
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
        Some(true) => {
            Err(ApiError::Conflict(format!("pack {r:?} already exists as a system pack; choose another ref")))
        }
        Some(false) => {
            Err(ApiError::Conflict(format!("pack {r:?} already exists; reload it with POST /api/v1/packs/{r}/reload")))
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    #[serde(flatten)]
    pack: PackView,
    /// False when the directory's content was unchanged since the last load.
    changed: bool,
}

/// Re-reads a pack's directory and applies it in one transaction: definitions are
/// updated in place (ids and webhook URLs survive), removed ones are deleted. A bad
/// directory changes nothing.
#[utoipa::path(post, path = "/api/v1/packs/{key}/reload", tag = "packs", params(("key" = String, Path, description = "pack ref or id")),
    security(("bearer" = [])), responses((status = 200, body = Reloaded), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn reload(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
) -> Result<Json<Reloaded>, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let pack = match find::<PackView>(&mut tx, &who, Key::Ref(&key)).await {
        Ok(p) => p,
        Err(ApiError::NotFound(m)) => match key.parse::<i64>() {
            Ok(id) => find::<PackView>(&mut tx, &who, Key::Id(id)).await?,
            Err(_) => return Err(ApiError::NotFound(m)),
        },
        Err(e) => return Err(e),
    };
    if pack.system {
        return Err(system_read_only("pack", &pack.pack_ref));
    }
    let Some(path) = pack.path.clone() else {
        return Err(ApiError::Conflict(format!(
            "pack {:?} was registered without a directory; there is nothing to reload",
            pack.pack_ref
        )));
    };
    let def = load_dir(PathBuf::from(&path)).await?;
    if def.meta.pack_ref.as_str() != pack.pack_ref {
        return Err(ApiError::Unprocessable(format!(
            "{path}/pack.yaml: ref: the directory now holds pack {:?}, not {:?}",
            def.meta.pack_ref.as_str(),
            pack.pack_ref
        )));
    }
    let installed = install::install(&mut tx, Some(who.tenant_id), &def, false).await.map_err(pack_error)?;
    if installed.changed {
        let data = json!({"ref": pack.pack_ref, "version": def.meta.version});
        audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), "pack.reloaded", "pack", pack.id, data).await?;
    }
    let view = find::<PackView>(&mut tx, &who, Key::Id(pack.id)).await?;
    tx.commit().await?;
    Ok(Json(Reloaded { pack: view, changed: installed.changed }))
}
