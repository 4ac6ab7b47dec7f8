//! `/api/v1/actions`.

use attune_core::domain::RunnerType;
use attune_core::pack::install::{write_action, Mode};
use attune_core::pack::spec::ActionSpec;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::definitions::routes::{change_routes, create_route, read_routes};
use crate::definitions::{
    in_use, invalid, known_actions, may_run_all, pack_ref_of, workflow_actions, writable_pack, written, Definition,
    Head, Select,
};
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
pub struct ActionView {
    pub id: i64,
    #[serde(rename = "ref")]
    pub action_ref: String,
    pub pack: String,
    pub description: Option<String>,
    #[schema(value_type = String)]
    pub runner_type: RunnerType,
    pub entry_point: Option<String>,
    pub command: Option<String>,
    pub code: Option<String>,
    pub parameters: Value,
    pub output_schema: Option<Value>,
    pub timeout_seconds: Option<i32>,
    pub retry: Option<Value>,
    pub concurrency: Option<i32>,
    pub secrets: Vec<String>,
    pub workflow: Option<Value>,
    pub http: Option<Value>,
    pub container: Option<Value>,
    pub with_items: Option<String>,
    pub enabled: bool,
    /// Roles that may run it by hand; null: every role with the run permission.
    pub run_roles: Option<Vec<String>>,
    /// Whether its sandbox has network.
    pub network: bool,
    pub system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only actions of this pack.
    pack: Option<String>,
    /// Only actions of this runner type.
    runner_type: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

impl Definition for ActionView {
    const KIND: &'static str = "action";
    const SPEC_FIELDS: &'static [&'static str] = &[
        "ref",
        "description",
        "runner_type",
        "entry_point",
        "command",
        "code",
        "parameters",
        "output_schema",
        "timeout_seconds",
        "retry",
        "concurrency",
        "secrets",
        "workflow",
        "http",
        "container",
        "with_items",
        "enabled",
        "run_roles",
        "network",
    ];
    type Filter = ListParams;
    type Spec = ActionSpec;

    fn head(&self) -> Head<'_> {
        Head { id: self.id, reference: &self.action_ref, system: self.system }
    }

    async fn select(conn: &mut PgConnection, q: Select<'_, ListParams>) -> Result<Vec<Self>, sqlx::Error> {
        let f = q.filter;
        sqlx::query_file_as!(
            ActionView,
            "../../sql/api/definitions/action_select.sql",
            q.tenant_id,
            q.id,
            q.reference,
            f.pack,
            f.runner_type,
            q.limit,
            q.offset
        )
        .fetch_all(conn)
        .await
    }

    async fn count(conn: &mut PgConnection, tenant_id: i64, f: &ListParams) -> Result<i64, sqlx::Error> {
        sqlx::query_file_scalar!("../../sql/api/definitions/action_count.sql", tenant_id, f.pack, f.runner_type)
            .fetch_one(conn)
            .await
    }

    async fn save(conn: &mut PgConnection, who: &Principal, spec: ActionSpec, mode: Mode) -> Result<i64, ApiError> {
        let pack = pack_ref_of(spec.action_ref.as_deref(), spec.pack.as_deref())?;
        if matches!(spec.workflow, Some(Value::String(_))) {
            return Err(ApiError::Unprocessable(
                "workflow: through the API a workflow is given inline, as a mapping with tasks".into(),
            ));
        }
        let def = spec.check(&pack, None).map_err(invalid)?;
        let pack_id = writable_pack(conn, who.tenant_id, &pack).await?;
        if mode == Mode::Upsert {
            // Only the roles that may run an action may change it (else an editor would
            // lift an admin-only action's run_roles, or change what it runs).
            let current = sqlx::query_scalar!(
                "SELECT run_roles FROM attune.action WHERE ref = $1 AND tenant_id = $2",
                def.action_ref.as_str(),
                who.tenant_id
            )
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
            if let Some(why) = who.run_refusal(def.action_ref.as_str(), current.as_deref()) {
                return Err(ApiError::Forbidden(format!("{why}; only they may change it")));
            }
        }
        if let Some(workflow) = &def.workflow {
            let context = format!("workflow of {}", def.action_ref.as_str());
            may_run_all(conn, who, &workflow_actions(workflow), &context).await?;
            known_actions(conn, who.tenant_id, def.action_ref.as_str(), workflow).await?;
        }
        let id = write_action(conn, Some(who.tenant_id), pack_id, &def, mode).await?;
        written(Self::KIND, def.action_ref.as_str(), mode, id)
    }

    async fn remove(conn: &mut PgConnection, this: &Self) -> Result<(), ApiError> {
        let rules = sqlx::query_scalar!("SELECT ref FROM attune.rule WHERE action_id = $1 ORDER BY ref", this.id)
            .fetch_all(&mut *conn)
            .await?;
        if !rules.is_empty() {
            return Err(in_use(Self::KIND, &this.action_ref, &rules));
        }
        sqlx::query!("DELETE FROM attune.action WHERE id = $1", this.id).execute(conn).await?;
        Ok(())
    }
}

read_routes! {
    view: ActionView, params: ListParams, tag: "actions", what: "action",
    list: "/api/v1/actions", one: "/api/v1/actions/{id}", by_ref: "/api/v1/actions/ref/{ref}"
}

create_route! {
    view: ActionView, spec: ActionSpec, tag: "actions", path: "/api/v1/actions",
    doc: "Creates an action in one of the caller's packs."
}

change_routes! {
    view: ActionView, tag: "actions", path: "/api/v1/actions/{id}",
    patch_doc: "Changes any field but `ref`; the result is validated like a create. `null` clears a field.",
    delete_doc: "Deletes an action no rule uses (409 naming the rules that do)."
}
