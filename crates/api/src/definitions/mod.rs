//! The one CRUD path of the definition kinds (packs, actions, triggers, rules, sensors).
//!
//! Each kind describes itself with [`Definition`] — its two queries (`select`: one by id
//! or ref, or a filtered page; `count`), how a create body is validated and written, how a
//! row is locked and deleted — and the routes call the generic operations here, which hold
//! what every kind shares: permissions, the tenant-confined transaction (RLS), pagination,
//! 404 for what the caller cannot see, 403 for system packs' definitions, PATCH merging
//! validated like a create, audit entries in the same transaction, and a retry when a
//! delete deadlocks with the services.

pub(crate) mod routes;
mod shared;

use std::future::Future;

use attune_core::audit;
use attune_core::pack::install::Mode;
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::PgConnection;

pub use shared::{
    duplicate, in_use, invalid, known_actions, may_run_all, pack_ref_of, patched, system_read_only, workflow_actions,
    writable_pack, written,
};

use crate::auth::{Permission, Principal};
use crate::db;
use crate::error::ApiError;
use crate::pagination::{self, Page};
use crate::state::ApiState;

/// One definition by id or by ref.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Id(i64),
    Ref(&'a str),
}

/// Which rows a `select` returns: one by key, or a filtered page.
pub struct Select<'a, F> {
    pub tenant_id: i64,
    pub id: Option<i64>,
    pub reference: Option<&'a str>,
    pub filter: &'a F,
    pub limit: i64,
    pub offset: i64,
}

/// What the generic operations read of any definition.
pub struct Head<'a> {
    pub id: i64,
    pub reference: &'a str,
    pub system: bool,
}

/// A kind of definition, as the generic operations see it. `Self` is its API view.
pub trait Definition: Serialize + Send + Sync + Sized + 'static {
    /// `action`, `trigger`, ...: in messages, audit entries and 404s.
    const KIND: &'static str;
    /// The fields of a create body, which a PATCH may change (all but `ref`).
    const SPEC_FIELDS: &'static [&'static str];
    /// The list filters (query string).
    type Filter: Default + Send + Sync;
    /// A create body.
    type Spec: DeserializeOwned + Send;

    /// Its id, its ref, and whether a system pack owns it.
    fn head(&self) -> Head<'_>;

    /// Rows visible to the tenant: by key, or a filtered page, in ref order.
    fn select(
        conn: &mut PgConnection,
        q: Select<'_, Self::Filter>,
    ) -> impl Future<Output = Result<Vec<Self>, sqlx::Error>> + Send;

    fn count(
        conn: &mut PgConnection,
        tenant_id: i64,
        filter: &Self::Filter,
    ) -> impl Future<Output = Result<i64, sqlx::Error>> + Send;

    /// Validates a create (or patched) body and writes it; returns the id. The
    /// validation hook: a bad body is a 4xx naming the field.
    fn save(
        conn: &mut PgConnection,
        who: &Principal,
        spec: Self::Spec,
        mode: Mode,
    ) -> impl Future<Output = Result<i64, ApiError>> + Send;

    /// Deletes the caller's own definition `this` (refusing with 409 what others use).
    fn remove(conn: &mut PgConnection, this: &Self) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Fills what the row alone does not say (e.g. a trigger's absolute webhook URL).
    fn finish(&mut self, _state: &ApiState) {}

    /// The view as the PATCH merge sees it (fields the view hides may be added).
    fn current(&self, _conn: &mut PgConnection) -> impl Future<Output = Result<Value, ApiError>> + Send {
        let current = serde_json::to_value(self).map_err(|e| ApiError::Internal(e.into()));
        async { current }
    }

    /// What the audit entry of a create records.
    fn created_data(&self) -> Value {
        json!({"ref": self.head().reference})
    }

    /// Checks a PATCH body before it is merged (e.g. fields a kind does not let change).
    fn check_patch(_patch: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// The audit data of a PATCH (secrets masked).
    fn logged_patch(patch: &Value) -> Value {
        patch.clone()
    }
}

/// One definition visible to the caller; 404 naming the key when there is none.
pub async fn find<D: Definition>(conn: &mut PgConnection, who: &Principal, key: Key<'_>) -> Result<D, ApiError> {
    let (id, reference) = match key {
        Key::Id(id) => (Some(id), None),
        Key::Ref(r) => (None, Some(r)),
    };
    let q = Select { tenant_id: who.tenant_id, id, reference, filter: &D::Filter::default(), limit: 1, offset: 0 };
    D::select(conn, q).await?.into_iter().next().ok_or_else(|| match key {
        Key::Id(id) => ApiError::not_found(D::KIND, id),
        Key::Ref(r) => ApiError::NotFound(format!("{} {:?} not found", D::KIND, crate::error::excerpt(r))),
    })
}

/// `GET /<kind>s`: a page of what the caller can see.
pub async fn list<D: Definition>(
    state: &ApiState,
    who: &Principal,
    filter: D::Filter,
    limit: Option<i64>,
    offset: Option<i64>,
) -> Result<Json<Page<D>>, ApiError> {
    who.require(Permission::Read)?;
    let (limit, offset) = pagination::resolve(limit, offset)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let total = D::count(&mut tx, who.tenant_id, &filter).await?;
    let q = Select { tenant_id: who.tenant_id, id: None, reference: None, filter: &filter, limit, offset };
    let mut data = D::select(&mut tx, q).await?;
    tx.commit().await?;
    data.iter_mut().for_each(|d| d.finish(state));
    Ok(Json(Page { data, total, limit, offset }))
}

/// `GET /<kind>s/{id}` and `GET /<kind>s/ref/{ref}`.
pub async fn get<D: Definition>(state: &ApiState, who: &Principal, key: Key<'_>) -> Result<Json<D>, ApiError> {
    who.require(Permission::Read)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let mut found = find::<D>(&mut tx, who, key).await?;
    tx.commit().await?;
    found.finish(state);
    Ok(Json(found))
}

/// `POST /<kind>s`: validated, written and audited in one transaction.
pub async fn create<D: Definition>(
    state: &ApiState,
    who: &Principal,
    spec: D::Spec,
) -> Result<(StatusCode, Json<D>), ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let id = D::save(&mut tx, who, spec, Mode::Create).await?;
    let mut view = find::<D>(&mut tx, who, Key::Id(id)).await?;
    let action = format!("{}.created", D::KIND);
    audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), &action, D::KIND, id, view.created_data()).await?;
    tx.commit().await?;
    view.finish(state);
    Ok((StatusCode::CREATED, Json(view)))
}

/// The caller's own definition `id`, locked for a change: 404 when the caller cannot see
/// it, 403 when it is a system pack's.
async fn writable<D: Definition>(conn: &mut PgConnection, who: &Principal, id: i64) -> Result<D, ApiError> {
    let found = find::<D>(conn, who, Key::Id(id)).await?;
    if found.head().system {
        return Err(system_read_only(D::KIND, found.head().reference));
    }
    // Concurrent changes of one definition apply one after the other: a transaction lock
    // on (kind, id), taken after the visibility check (RLS would let a tenant take only
    // its own rows' locks anyway).
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtextextended($1::text || ':' || $2::bigint, 0))", D::KIND, id)
        .execute(conn)
        .await?;
    Ok(found)
}

/// `PATCH /<kind>s/{id}`: any field of the create body but `ref`, merged into the current
/// definition and validated like a create; `null` clears a field.
pub async fn update<D: Definition>(
    state: &ApiState,
    who: &Principal,
    id: i64,
    patch: Value,
) -> Result<Json<D>, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    D::check_patch(&patch)?;
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let current = writable::<D>(&mut tx, who, id).await?.current(&mut tx).await?;
    let merged = patched(current, &patch, D::SPEC_FIELDS)?;
    let spec: D::Spec = serde_json::from_value(merged).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    D::save(&mut tx, who, spec, Mode::Upsert).await?;
    let action = format!("{}.updated", D::KIND);
    audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), &action, D::KIND, id, D::logged_patch(&patch))
        .await?;
    let mut view = find::<D>(&mut tx, who, Key::Id(id)).await?;
    tx.commit().await?;
    view.finish(state);
    Ok(Json(view))
}

/// `DELETE /<kind>s/{id}`. The services lock the same rows (events, leases, rules) in
/// their own order; a deadlock with them aborts our transaction without effect, so it is
/// tried again (twice) before the 503.
pub async fn delete<D: Definition>(state: &ApiState, who: &Principal, id: i64) -> Result<StatusCode, ApiError> {
    who.require(Permission::WriteDefinitions)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match delete_once::<D>(state, who, id).await {
            Err(ApiError::Unavailable(_)) if attempt < 3 => continue,
            result => return result,
        }
    }
}

async fn delete_once<D: Definition>(state: &ApiState, who: &Principal, id: i64) -> Result<StatusCode, ApiError> {
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    let this = writable::<D>(&mut tx, who, id).await?;
    D::remove(&mut tx, &this).await?;
    let action = format!("{}.deleted", D::KIND);
    audit::record_one(
        &mut tx,
        Some(who.tenant_id),
        &who.actor(),
        &action,
        D::KIND,
        id,
        json!({"ref": this.head().reference}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
