//! `/api/v1/packs`: register an empty pack or load one from a server directory, read,
//! update, delete, reload.

use std::path::PathBuf;

use attune_core::domain::PackRef;
use attune_core::pack::{install, loader, PackError};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::ApiState;
use crate::auth::{Permission, Principal};
use crate::definitions::{duplicate, ensure_writable, system_read_only};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{self, Page};
use crate::{audit, db};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(get_by_ref))
        .routes(routes!(reload))
}

#[derive(Debug, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PackView {
    pub id: i64,
    #[serde(rename = "ref")]
    #[sqlx(rename = "ref")]
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

const SELECT: &str =
    "SELECT id, ref, label, version, description, tenant_id IS NULL AS system, path, created_at, updated_at
                      FROM attune.pack";

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Packs the caller can see (its own and the system packs), in ref order.
#[utoipa::path(get, path = "/api/v1/packs", tag = "packs", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<PackView>)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<PackView>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let filter = "WHERE tenant_id = $1 OR tenant_id IS NULL";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM attune.pack {filter}"))
        .bind(who.tenant_id)
        .fetch_one(&mut *tx)
        .await?;
    let data = sqlx::query_as(&format!("{SELECT} {filter} ORDER BY ref, id LIMIT $2 OFFSET $3"))
        .bind(who.tenant_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Page { data, total, limit, offset }))
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

async fn fetch(conn: &mut sqlx::PgConnection, tenant_id: i64, id: i64) -> Result<PackView, ApiError> {
    sqlx::query_as(&db::definition_by_id(SELECT, ""))
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("pack", id))
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
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let id = match body.path {
        Some(path) => {
            if body.pack_ref.is_some() || body.version.is_some() || body.label.is_some() || body.description.is_some() {
                return Err(ApiError::Unprocessable(
                    "path: give either path (the pack.yaml says the rest) or ref/version/label/description, not both"
                        .into(),
                ));
            }
            let def = load_dir(PathBuf::from(&path)).await?;
            refuse_taken(&mut tx, who.tenant_id, def.meta.pack_ref.as_str()).await?;
            let installed = install::install(&mut tx, Some(who.tenant_id), &def, true).await.map_err(pack_error)?;
            audit::record(
                &mut tx,
                &who,
                "pack.created",
                "pack",
                installed.pack_id,
                json!({"ref": def.meta.pack_ref.as_str(), "path": path}),
            )
            .await?;
            installed.pack_id
        }
        None => {
            let Some(raw) = body.pack_ref else {
                return Err(ApiError::Unprocessable("ref: missing: give ref (and version) or path".into()));
            };
            let pack_ref = PackRef::parse(&raw).map_err(|e| ApiError::Unprocessable(format!("ref: {e}")))?;
            let version = body.version.unwrap_or_else(|| "0.0.0".into());
            if version.trim().is_empty() || version.len() > 64 {
                return Err(ApiError::Unprocessable(
                    "version: must be a non-empty version string such as 1.0.0".into(),
                ));
            }
            refuse_taken(&mut tx, who.tenant_id, pack_ref.as_str()).await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO attune.pack (tenant_id, ref, label, version, description) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(who.tenant_id)
            .bind(pack_ref.as_str())
            .bind(&body.label)
            .bind(&version)
            .bind(&body.description)
            .fetch_one(&mut *tx)
            .await
            .map_err(duplicate("pack", pack_ref.as_str()))?;
            audit::record(&mut tx, &who, "pack.created", "pack", id, json!({"ref": pack_ref.as_str()})).await?;
            id
        }
    };
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A pack ref is taken when the tenant or a system pack has it.
async fn refuse_taken(conn: &mut sqlx::PgConnection, tenant_id: i64, r: &str) -> Result<(), ApiError> {
    let system: Option<bool> = sqlx::query_scalar(
        "SELECT tenant_id IS NULL FROM attune.pack WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL) LIMIT 1",
    )
    .bind(r)
    .bind(tenant_id)
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

/// One pack by id.
#[utoipa::path(get, path = "/api/v1/packs/{id}", tag = "packs", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = PackView), (status = 404)))]
async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PackView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_id(SELECT, "");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, id, "pack").await?))
}

/// One pack by ref (the tenant's own, else the system pack of that ref).
#[utoipa::path(get, path = "/api/v1/packs/ref/{ref}", tag = "packs", params(("ref" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PackView), (status = 404)))]
async fn get_by_ref(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(r): ApiPath<String>,
) -> Result<Json<PackView>, ApiError> {
    who.require(Permission::Read)?;
    let sql = db::definition_by_ref(SELECT, "");
    Ok(Json(db::read_one(state.pool(), who.tenant_id, &sql, r, "pack").await?))
}

async fn by_ref(conn: &mut sqlx::PgConnection, tenant_id: i64, r: &str) -> Result<PackView, ApiError> {
    sqlx::query_as(&db::definition_by_ref(SELECT, ""))
        .bind(r)
        .bind(tenant_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| ApiError::not_found("pack", format!("{r:?}")))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePack {
    label: Option<String>,
    version: Option<String>,
    description: Option<String>,
}

/// Changes a pack's label, version or description.
#[utoipa::path(patch, path = "/api/v1/packs/{id}", tag = "packs", params(("id" = i64, Path)), request_body = UpdatePack,
    security(("bearer" = [])), responses((status = 200, body = PackView), (status = 403), (status = 404)))]
async fn update(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<UpdatePack>,
) -> Result<Json<PackView>, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    if body.version.as_deref().is_some_and(|v| v.trim().is_empty() || v.len() > 64) {
        return Err(ApiError::Unprocessable("version: must be a non-empty version string such as 1.0.0".into()));
    }
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    ensure_writable(&mut tx, "pack", who.tenant_id, id).await?;
    sqlx::query(
        "UPDATE attune.pack SET label = COALESCE($2, label), version = COALESCE($3, version),
                description = COALESCE($4, description), updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(&body.label)
    .bind(&body.version)
    .bind(&body.description)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &who,
        "pack.updated",
        "pack",
        id,
        json!({"label": body.label, "version": body.version, "description": body.description}),
    )
    .await?;
    let view = fetch(&mut tx, who.tenant_id, id).await?;
    tx.commit().await?;
    Ok(Json(view))
}

/// Deletes a pack and every definition in it.
#[utoipa::path(delete, path = "/api/v1/packs/{id}", tag = "packs", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 403), (status = 404), (status = 409)))]
async fn delete(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    // The services touch the same rows (events, leases) in their own order; a deadlock
    // with them aborts our transaction without effect, so it is simply tried again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match delete_pack(&state, &who, id).await {
            Err(ApiError::Unavailable(_)) if attempt < 3 => continue,
            result => return result,
        }
    }
}

async fn delete_pack(state: &ApiState, who: &Principal, id: i64) -> Result<StatusCode, ApiError> {
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let r = ensure_writable(&mut tx, "pack", who.tenant_id, id).await?;
    let outside: Vec<String> = sqlx::query_scalar(
        "SELECT r.ref FROM attune.rule r
           JOIN attune.action a ON a.id = r.action_id
           JOIN attune.trigger t ON t.id = r.trigger_id
          WHERE r.pack_id <> $1 AND (a.pack_id = $1 OR t.pack_id = $1) ORDER BY r.ref",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    if !outside.is_empty() {
        return Err(ApiError::Conflict(format!(
            "pack {r:?} is used by rules of other packs: {}; delete or change them first",
            outside.join(", ")
        )));
    }
    // The pack's events and sensor leases first, in the order the rule engine and
    // the sensor service take them (event, then action; lease, then sensor).
    sqlx::query(
        "SELECT 1 FROM attune.event WHERE trigger_id IN (SELECT id FROM attune.trigger WHERE pack_id = $1) FOR UPDATE",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM attune.sensor_lease WHERE sensor_id IN (SELECT id FROM attune.sensor WHERE pack_id = $1)")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM attune.rule WHERE pack_id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM attune.pack WHERE id = $1").bind(id).execute(&mut *tx).await?;
    audit::record(&mut tx, who, "pack.deleted", "pack", id, json!({"ref": r})).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
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
    let pack = match by_ref(&mut tx, who.tenant_id, &key).await {
        Ok(p) => p,
        Err(ApiError::NotFound(m)) => match key.parse::<i64>() {
            Ok(id) => fetch(&mut tx, who.tenant_id, id).await?,
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
        audit::record(
            &mut tx,
            &who,
            "pack.reloaded",
            "pack",
            pack.id,
            json!({"ref": pack.pack_ref, "version": def.meta.version}),
        )
        .await?;
    }
    let view = fetch(&mut tx, who.tenant_id, pack.id).await?;
    tx.commit().await?;
    Ok(Json(Reloaded { pack: view, changed: installed.changed }))
}
