//! `/api/v1/datastore`: key/value items of the caller's tenant (`scope: tenant`) or of the
//! caller alone (`scope: user`), any JSON value, with an optional time to live. Encrypted
//! items are sealed at rest ([`attune_core::datastore`]); their value is plaintext for
//! editors, admins and execution tokens, `"********"` for others and in lists unless
//! `decrypt=true`. An expired item is gone at once (404). Writes are audited without the
//! value.

use attune_core::datastore::{self, ItemId};
use attune_core::domain::rbac::Role;
use attune_core::execution::MASK;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Permission, Principal};
use crate::db;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::pagination::{self, Page};
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list, upsert)).routes(routes!(get_one, delete))
}

/// Longest time to live: 100 years.
const MAX_TTL_SECONDS: i64 = 100 * 365 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Shared by the tenant.
    #[default]
    Tenant,
    /// The caller's own.
    User,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Tenant => "tenant",
            Scope::User => "user",
        }
    }

    /// The owner column of an item of this scope for `who`. An execution token has no
    /// user of its own: its `user` scope is refused.
    fn owner(self, who: &Principal) -> Result<Option<i64>, ApiError> {
        match (self, who.execution_id) {
            (Scope::Tenant, _) => Ok(None),
            (Scope::User, None) => Ok(Some(who.identity_id)),
            (Scope::User, Some(_)) => {
                Err(ApiError::Unprocessable("scope: an execution's token has no user scope; use tenant".into()))
            }
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Upsert {
    key: String,
    /// Any JSON value.
    value: Value,
    #[serde(default)]
    encrypted: bool,
    /// Gone (404) this many seconds after the write.
    ttl_seconds: Option<i64>,
    #[serde(default)]
    scope: Scope,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Item {
    pub key: String,
    /// The value, or `"********"` for an encrypted one the caller may not (or did not ask to) see.
    pub value: Value,
    pub encrypted: bool,
    pub scope: Scope,
    pub expires_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A stored row of `sql/api/datastore.sql`.
struct Row {
    key: String,
    value: Option<Value>,
    ciphertext: Option<Vec<u8>>,
    key_version: Option<i32>,
    encrypted: bool,
    owner_id: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
    updated_at: DateTime<Utc>,
}

/// Whether the caller sees encrypted values in plaintext: editors, admins and an
/// execution's own token.
fn may_decrypt(who: &Principal) -> bool {
    who.execution_id.is_some() || matches!(who.role, Role::Admin | Role::Editor)
}

/// Datastore writes: editors, admins, and an execution's own token (its actions keep state).
fn require_write(who: &Principal) -> Result<(), ApiError> {
    if who.execution_id.is_some() {
        return Ok(());
    }
    who.require(Permission::WriteDatastore)
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 512 || key.chars().any(char::is_control) {
        return Err(ApiError::Unprocessable(format!(
            "key {}: must be 1-512 characters without control characters",
            crate::error::excerpt(key)
        )));
    }
    Ok(())
}

fn view(state: &ApiState, tenant_id: i64, row: Row, decrypt: bool) -> Result<Item, ApiError> {
    let scope = if row.owner_id.is_some() { Scope::User } else { Scope::Tenant };
    let value = match (row.encrypted, decrypt, row.ciphertext) {
        (true, true, Some(sealed)) => {
            let item = ItemId { tenant_id, scope: scope.as_str(), owner_id: row.owner_id, key: &row.key };
            datastore::open(&state.ctx.keys.encryption, item, &sealed, row.key_version.unwrap_or(1))
                .map_err(|e| ApiError::Conflict(format!("{e}; write the item again to replace it")))?
        }
        (true, _, _) => Value::String(MASK.into()),
        (false, _, _) => row.value.unwrap_or(Value::Null),
    };
    Ok(Item {
        key: row.key,
        value,
        encrypted: row.encrypted,
        scope,
        expires_at: row.expires_at,
        updated_at: row.updated_at,
    })
}

/// Creates or replaces an item (201 when new, 200 when replaced).
#[utoipa::path(post, path = "/api/v1/datastore", tag = "datastore", request_body = Upsert, security(("bearer" = [])),
    responses((status = 201, body = Item), (status = 200, body = Item), (status = 403), (status = 422)))]
async fn upsert(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(body): ApiJson<Upsert>,
) -> Result<(StatusCode, Json<Item>), ApiError> {
    require_write(&who)?;
    check_key(&body.key)?;
    if let Some(ttl) = body.ttl_seconds {
        if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(ApiError::Unprocessable(format!("ttl_seconds: must be 1 to {MAX_TTL_SECONDS}, got {ttl}")));
        }
    }
    let owner_id = body.scope.owner(&who)?;
    let (value, sealed, version) = if body.encrypted {
        let item = ItemId { tenant_id: who.tenant_id, scope: body.scope.as_str(), owner_id, key: &body.key };
        let (sealed, version) = datastore::seal(&state.ctx.keys.encryption, item, &body.value);
        (None, Some(sealed), Some(version))
    } else {
        (Some(body.value.clone()), None, None)
    };
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let written = sqlx::query_file!(
        "../../sql/api/datastore_upsert.sql",
        who.tenant_id,
        body.scope.as_str(),
        owner_id,
        body.key,
        value,
        sealed,
        body.encrypted,
        body.ttl_seconds.map(|t| t as f64),
        version,
    )
    .fetch_one(&mut *tx)
    .await?;
    let data = json!({"key": body.key, "scope": body.scope.as_str(), "encrypted": body.encrypted, "ttl_seconds": body.ttl_seconds});
    let verb = if written.created { "datastore.created" } else { "datastore.updated" };
    attune_core::audit::record_one(
        &mut tx,
        Some(who.tenant_id),
        &who.actor(),
        verb,
        "datastore_item",
        written.id,
        data,
    )
    .await?;
    tx.commit().await?;
    let item = Item {
        key: body.key,
        value: if body.encrypted && !may_decrypt(&who) { Value::String(MASK.into()) } else { body.value },
        encrypted: body.encrypted,
        scope: body.scope,
        expires_at: written.expires_at,
        updated_at: written.updated_at,
    };
    Ok((if written.created { StatusCode::CREATED } else { StatusCode::OK }, Json(item)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// `tenant` (default) or `user`.
    #[serde(default)]
    scope: Scope,
}

/// One item; missing or expired 404.
#[utoipa::path(get, path = "/api/v1/datastore/{key}", tag = "datastore", params(("key" = String, Path), GetParams),
    security(("bearer" = [])), responses((status = 200, body = Item), (status = 404)))]
async fn get_one(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<GetParams>,
) -> Result<Json<Item>, ApiError> {
    who.require(Permission::Read)?;
    let owner_id = q.scope.owner(&who)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let rows = select(&mut tx, who.tenant_id, q.scope, owner_id, Some(&key), None, (1, 0)).await?;
    tx.commit().await?;
    let row = db::the_one(rows, "datastore item", crate::error::excerpt(&key))?;
    Ok(Json(view(&state, who.tenant_id, row, may_decrypt(&who))?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only keys starting with this.
    prefix: Option<String>,
    #[serde(default)]
    scope: Scope,
    /// Show encrypted values in plaintext (editors and admins).
    #[serde(default)]
    decrypt: bool,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Items of a scope in key order; encrypted values masked unless `decrypt=true`.
#[utoipa::path(get, path = "/api/v1/datastore", tag = "datastore", params(ListParams), security(("bearer" = [])),
    responses((status = 200, body = Page<Item>), (status = 403)))]
async fn list(
    State(state): State<ApiState>,
    who: Principal,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<Page<Item>>, ApiError> {
    who.require(Permission::Read)?;
    if q.decrypt && !may_decrypt(&who) {
        return Err(ApiError::Forbidden(format!(
            "permission denied: role '{}' may not see encrypted values (decrypt=true needs editor or admin)",
            who.role
        )));
    }
    let (limit, offset) = pagination::resolve(q.limit, q.offset)?;
    let owner_id = q.scope.owner(&who)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total = sqlx::query_file_scalar!(
        "../../sql/api/datastore_count.sql",
        who.tenant_id,
        q.scope.as_str(),
        owner_id,
        q.prefix
    )
    .fetch_one(&mut *tx)
    .await?;
    let rows = select(&mut tx, who.tenant_id, q.scope, owner_id, None, q.prefix.as_deref(), (limit, offset)).await?;
    tx.commit().await?;
    let data = rows.into_iter().map(|r| view(&state, who.tenant_id, r, q.decrypt)).collect::<Result<_, _>>()?;
    Ok(Json(Page { data, total, limit, offset }))
}

async fn select(
    conn: &mut sqlx::PgConnection,
    tenant_id: i64,
    scope: Scope,
    owner_id: Option<i64>,
    key: Option<&str>,
    prefix: Option<&str>,
    (limit, offset): (i64, i64),
) -> Result<Vec<Row>, sqlx::Error> {
    sqlx::query_file_as!(
        Row,
        "../../sql/api/datastore.sql",
        tenant_id,
        scope.as_str(),
        owner_id,
        key,
        prefix,
        limit,
        offset
    )
    .fetch_all(conn)
    .await
}

/// Deletes an item (204); missing 404.
#[utoipa::path(delete, path = "/api/v1/datastore/{key}", tag = "datastore", params(("key" = String, Path), GetParams),
    security(("bearer" = [])), responses((status = 204), (status = 403), (status = 404)))]
async fn delete(
    State(state): State<ApiState>,
    who: Principal,
    ApiPath(key): ApiPath<String>,
    ApiQuery(q): ApiQuery<GetParams>,
) -> Result<StatusCode, ApiError> {
    require_write(&who)?;
    let owner_id = q.scope.owner(&who)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let deleted = sqlx::query_scalar!(
        "DELETE FROM attune.datastore_item
          WHERE tenant_id = $1 AND scope = $2 AND owner_id IS NOT DISTINCT FROM $3 AND key = $4
            AND (expires_at IS NULL OR expires_at > now())
         RETURNING id",
        who.tenant_id,
        q.scope.as_str(),
        owner_id,
        key
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ApiError::not_found("datastore item", crate::error::excerpt(&key)))?;
    let data = json!({"key": key, "scope": q.scope.as_str()});
    attune_core::audit::record_one(
        &mut tx,
        Some(who.tenant_id),
        &who.actor(),
        "datastore.deleted",
        "datastore_item",
        deleted,
        data,
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
