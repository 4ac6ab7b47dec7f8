//! `/api/v1/rules`. Trigger and action refs are resolved when the rule is created;
//! criteria and parameter templates are compiled then too.

use attune_core::domain::Ref;
use attune_core::pack::install::{resolve, write_rule, Mode, RefKind};
use attune_core::pack::spec::RuleSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::definitions::routes::{change_routes, create_route, read_routes};
use crate::definitions::{invalid, may_run_all, pack_ref_of, writable_pack, written, Definition, Head, Select};
use crate::error::{excerpt, ApiError};
use crate::pagination::Page;
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, delete))
        .routes(routes!(get_by_ref))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleView {
    pub id: i64,
    #[serde(rename = "ref")]
    pub rule_ref: String,
    pub pack: String,
    pub description: Option<String>,
    /// Trigger ref.
    pub trigger: String,
    /// Action ref.
    pub action: String,
    pub criteria: Option<String>,
    pub action_params: Value,
    pub enabled: bool,
    pub notify_on_trigger: bool,
    pub system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a PATCH may change (API.md).
const PATCHABLE: &[&str] = &["enabled", "criteria", "action_params", "notify_on_trigger", "description"];

#[derive(Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pack: Option<String>,
    /// Only rules of this trigger ref.
    trigger: Option<String>,
    /// Only rules running this action ref.
    action: Option<String>,
    enabled: Option<bool>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn resolve_ref(conn: &mut PgConnection, kind: RefKind, tenant_id: i64, r: &Ref) -> Result<i64, ApiError> {
    resolve(conn, kind, Some(tenant_id), r).await?.ok_or_else(|| {
        let kind = kind.as_str();
        ApiError::Unprocessable(format!("{kind}: {kind} {:?} does not exist", excerpt(r.as_str())))
    })
}

impl Definition for RuleView {
    const KIND: &'static str = "rule";
    const SPEC_FIELDS: &'static [&'static str] =
        &["ref", "description", "trigger", "action", "criteria", "action_params", "enabled", "notify_on_trigger"];
    type Filter = ListParams;
    type Spec = RuleSpec;

    fn head(&self) -> Head<'_> {
        Head { id: self.id, reference: &self.rule_ref, system: self.system }
    }

    async fn select(conn: &mut PgConnection, q: Select<'_, ListParams>) -> Result<Vec<Self>, sqlx::Error> {
        let f = q.filter;
        sqlx::query_file_as!(
            RuleView,
            "../../sql/api/definitions/rule_select.sql",
            q.tenant_id,
            q.id,
            q.reference,
            f.pack,
            f.trigger,
            f.action,
            f.enabled,
            q.limit,
            q.offset
        )
        .fetch_all(conn)
        .await
    }

    async fn count(conn: &mut PgConnection, tenant_id: i64, f: &ListParams) -> Result<i64, sqlx::Error> {
        sqlx::query_file_scalar!(
            "../../sql/api/definitions/rule_count.sql",
            tenant_id,
            f.pack,
            f.trigger,
            f.action,
            f.enabled
        )
        .fetch_one(conn)
        .await
    }

    async fn save(conn: &mut PgConnection, who: &Principal, spec: RuleSpec, mode: Mode) -> Result<i64, ApiError> {
        let pack = pack_ref_of(spec.rule_ref.as_deref(), spec.pack.as_deref())?;
        let def = spec.check(&pack, None).map_err(invalid)?;
        let pack_id = writable_pack(conn, who.tenant_id, &pack).await?;
        let trigger_id = resolve_ref(conn, RefKind::Trigger, who.tenant_id, &def.trigger).await?;
        let action_id = resolve_ref(conn, RefKind::Action, who.tenant_id, &def.action).await?;
        // The rule will run its action on its author's say-so (creating or changing it).
        let context = format!("rule {}", def.rule_ref.as_str());
        may_run_all(conn, who, &[def.action.as_str().to_string()], &context).await?;
        let id = write_rule(conn, Some(who.tenant_id), pack_id, &def, trigger_id, action_id, mode).await?;
        written(Self::KIND, def.rule_ref.as_str(), mode, id)
    }

    async fn remove(conn: &mut PgConnection, this: &Self) -> Result<(), ApiError> {
        sqlx::query!("DELETE FROM attune.rule WHERE id = $1", this.id).execute(conn).await?;
        Ok(())
    }

    fn created_data(&self) -> Value {
        json!({"ref": self.rule_ref, "trigger": self.trigger, "action": self.action})
    }

    fn check_patch(patch: &Value) -> Result<(), ApiError> {
        match patch.as_object().and_then(|map| map.keys().find(|k| !PATCHABLE.contains(&k.as_str()))) {
            Some(bad) => Err(ApiError::Unprocessable(format!(
                "{bad}: cannot be changed on a rule; a PATCH may change {}",
                PATCHABLE.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

read_routes! {
    view: RuleView, params: ListParams, tag: "rules", what: "rule",
    list: "/api/v1/rules", one: "/api/v1/rules/{id}", by_ref: "/api/v1/rules/ref/{ref}"
}

create_route! {
    view: RuleView, spec: RuleSpec, tag: "rules", path: "/api/v1/rules",
    doc: "Creates a rule: when `trigger` fires and `criteria` holds, run `action` with `action_params`."
}

change_routes! {
    view: RuleView, tag: "rules", path: "/api/v1/rules/{id}",
    patch_doc: "Changes any of `enabled`, `criteria`, `action_params`, `notify_on_trigger`, `description`. Disabling takes effect for the next event.",
    delete_doc: "Deletes a rule."
}
