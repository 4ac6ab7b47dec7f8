//! One module per resource. Each exposes `router()`, registering its handlers with their
//! OpenAPI descriptions (`utoipa_axum::routes!`).

pub mod actions;
pub mod audit;
pub mod auth;
pub mod datastore;
pub mod events;
pub mod executions;
pub mod health;
pub mod inquiries;
pub mod metrics;
pub mod packs;
pub mod rules;
pub mod sensors;
pub mod triggers;
pub mod users;
pub mod webhooks;
pub mod workers;

use axum::http::Uri;

use crate::error::ApiError;

/// Unknown paths answer with the JSON error body like every other failure.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", crate::error::excerpt(uri.path())))
}
