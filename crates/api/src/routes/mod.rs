//! One module per resource.

pub mod health;

use axum::http::Uri;

use crate::error::ApiError;

/// Unknown paths answer with the JSON error body like every other failure.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}
