//! `/api/v1/triggers`. A webhook trigger's answer carries its absolute `webhook_url`;
//! its `webhook_secret` is never returned.

use attune_core::domain::TriggerType;
use attune_core::pack::install::{write_trigger, Mode};
use attune_core::pack::spec::TriggerSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::definitions::routes::{change_routes, create_route, read_routes};
use crate::definitions::{in_use, invalid, pack_ref_of, writable_pack, written, Definition, Head, Select};
use crate::error::ApiError;
use crate::pagination::Page;
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(get_by_ref))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TriggerView {
    pub id: i64,
    #[serde(rename = "ref")]
    pub trigger_ref: String,
    pub pack: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub trigger_type: TriggerType,
    pub parameters: Value,
    pub payload_schema: Option<Value>,
    /// Absolute URL to POST events to (webhook triggers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Whether deliveries must carry `X-Attune-Signature` (webhook triggers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_signed: Option<bool>,
    pub enabled: bool,
    pub system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The key inside `webhook_url`.
    #[serde(skip)]
    #[schema(ignore)]
    webhook_key: Option<String>,
    #[serde(skip)]
    #[schema(ignore)]
    has_secret: bool,
}

#[derive(Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only triggers of this pack.
    pack: Option<String>,
    /// Only triggers of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    trigger_type: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

impl Definition for TriggerView {
    const KIND: &'static str = "trigger";
    const SPEC_FIELDS: &'static [&'static str] =
        &["ref", "description", "type", "parameters", "payload_schema", "webhook_secret", "enabled"];
    type Filter = ListParams;
    type Spec = TriggerSpec;

    fn head(&self) -> Head<'_> {
        Head { id: self.id, reference: &self.trigger_ref, system: self.system }
    }

    async fn select(conn: &mut PgConnection, q: Select<'_, ListParams>) -> Result<Vec<Self>, sqlx::Error> {
        let f = q.filter;
        sqlx::query_file_as!(
            TriggerView,
            "../../sql/api/definitions/trigger_select.sql",
            q.tenant_id,
            q.id,
            q.reference,
            f.pack,
            f.trigger_type,
            q.limit,
            q.offset
        )
        .fetch_all(conn)
        .await
    }

    async fn count(conn: &mut PgConnection, tenant_id: i64, f: &ListParams) -> Result<i64, sqlx::Error> {
        sqlx::query_file_scalar!("../../sql/api/definitions/trigger_count.sql", tenant_id, f.pack, f.trigger_type)
            .fetch_one(conn)
            .await
    }

    async fn save(conn: &mut PgConnection, who: &Principal, spec: TriggerSpec, mode: Mode) -> Result<i64, ApiError> {
        let pack = pack_ref_of(spec.trigger_ref.as_deref(), spec.pack.as_deref())?;
        let def = spec.check(&pack, None).map_err(invalid)?;
        let pack_id = writable_pack(conn, who.tenant_id, &pack).await?;
        let id = write_trigger(conn, Some(who.tenant_id), pack_id, &def, mode).await?;
        written(Self::KIND, def.trigger_ref.as_str(), mode, id)
    }

    async fn remove(conn: &mut PgConnection, this: &Self) -> Result<(), ApiError> {
        let rules = sqlx::query_scalar!("SELECT ref FROM attune.rule WHERE trigger_id = $1 ORDER BY ref", this.id)
            .fetch_all(&mut *conn)
            .await?;
        if !rules.is_empty() {
            return Err(in_use(Self::KIND, &this.trigger_ref, &rules));
        }
        sqlx::query!("DELETE FROM attune.trigger WHERE id = $1", this.id).execute(conn).await?;
        Ok(())
    }

    fn finish(&mut self, state: &ApiState) {
        let base = state.ctx.config.public_url();
        self.webhook_url = self.webhook_key.as_ref().map(|k| format!("{base}/api/v1/webhooks/{k}"));
        self.webhook_signed = (self.trigger_type == TriggerType::Webhook).then_some(self.has_secret);
    }

    /// The view never shows the secret; a PATCH carries it over unless it changes it.
    async fn current(&self, conn: &mut PgConnection) -> Result<Value, ApiError> {
        let mut current = serde_json::to_value(self).map_err(|e| ApiError::Internal(e.into()))?;
        current["webhook_secret"] = json!(
            sqlx::query_scalar!("SELECT webhook_secret FROM attune.trigger WHERE id = $1", self.id)
                .fetch_one(conn)
                .await?
        );
        Ok(current)
    }

    fn created_data(&self) -> Value {
        json!({"ref": self.trigger_ref, "type": self.trigger_type.as_str()})
    }

    fn logged_patch(patch: &Value) -> Value {
        let mut logged = patch.clone();
        if logged.get("webhook_secret").is_some() {
            logged["webhook_secret"] = json!("********");
        }
        logged
    }
}

read_routes! {
    view: TriggerView, params: ListParams, tag: "triggers", what: "trigger",
    list: "/api/v1/triggers", one: "/api/v1/triggers/{id}", by_ref: "/api/v1/triggers/ref/{ref}"
}

create_route! {
    view: TriggerView, spec: TriggerSpec, tag: "triggers", path: "/api/v1/triggers",
    doc: "Creates a trigger in one of the caller's packs. A webhook trigger gets an unguessable key inside its `webhook_url`; `webhook_secret` turns on HMAC checking of deliveries."
}

change_routes! {
    view: TriggerView, tag: "triggers", path: "/api/v1/triggers/{id}",
    patch_doc: "Changes any field but `ref`; validated like a create. The webhook URL stays the same.",
    delete_doc: "Deletes a trigger no rule uses (409 naming the rules that do)."
}
