//! `GET /health` (the process lives) and `GET /ready` (database reachable and migrated).

use attune_core::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;

pub fn router() -> Router<Context> {
    Router::new().route("/health", get(health)).route("/ready", get(ready))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(ctx): State<Context>) -> Result<Json<Value>, ApiError> {
    if attune_core::db::is_ready(&ctx.pool).await {
        Ok(Json(json!({"status": "ready"})))
    } else {
        Err(ApiError::Unavailable("the database is unreachable or not migrated yet".into()))
    }
}
