//! `/api/v1/sensors`: custom sensors, read-only (they come with packs).

use attune_core::domain::RunnerType;
use attune_core::pack::install::Mode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::definitions::routes::read_routes;
use crate::definitions::{Definition, Head, Select};
use crate::error::ApiError;
use crate::pagination::Page;
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(get_one)).routes(routes!(get_by_ref))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SensorView {
    pub id: i64,
    #[serde(rename = "ref")]
    pub sensor_ref: String,
    pub pack: String,
    pub description: Option<String>,
    #[schema(value_type = String)]
    pub runner_type: RunnerType,
    pub entry_point: String,
    pub poll_interval: i32,
    /// Trigger ref.
    pub trigger: String,
    pub config: Value,
    pub enabled: bool,
    pub system: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pack: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Sensors come with packs: they are written by pack loads, never through this API.
impl Definition for SensorView {
    const KIND: &'static str = "sensor";
    const SPEC_FIELDS: &'static [&'static str] = &[];
    type Filter = ListParams;
    type Spec = Value;

    fn head(&self) -> Head<'_> {
        Head { id: self.id, reference: &self.sensor_ref, system: self.system }
    }

    async fn select(conn: &mut PgConnection, q: Select<'_, ListParams>) -> Result<Vec<Self>, sqlx::Error> {
        let f = q.filter;
        sqlx::query_file_as!(
            SensorView,
            "../../sql/api/definitions/sensor_select.sql",
            q.tenant_id,
            q.id,
            q.reference,
            f.pack,
            q.limit,
            q.offset
        )
        .fetch_all(conn)
        .await
    }

    async fn count(conn: &mut PgConnection, tenant_id: i64, f: &ListParams) -> Result<i64, sqlx::Error> {
        sqlx::query_file_scalar!("../../sql/api/definitions/sensor_count.sql", tenant_id, f.pack).fetch_one(conn).await
    }

    async fn save(_: &mut PgConnection, _: &Principal, _: Value, _: Mode) -> Result<i64, ApiError> {
        Err(read_only())
    }

    async fn remove(_: &mut PgConnection, _: &Self) -> Result<(), ApiError> {
        Err(read_only())
    }
}

fn read_only() -> ApiError {
    ApiError::Forbidden("sensors come with packs: change the pack and reload it".into())
}

read_routes! {
    view: SensorView, params: ListParams, tag: "sensors", what: "sensor",
    list: "/api/v1/sensors", one: "/api/v1/sensors/{id}", by_ref: "/api/v1/sensors/ref/{ref}"
}
