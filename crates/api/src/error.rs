//! The one place where failures become HTTP answers:
//! `{"error": {"code": "...", "message": "..."}}` with a precise status.
//!
//! Handlers return [`ApiError`]; axum's own extractor rejections are converted by the
//! extractors of [`crate::extract`]; anything else that leaves the router as a non-JSON
//! error (a 405, a 413 from the body limit, a timeout) is rewritten by [`json_errors`].

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: not JSON, a bad query string, a bad path parameter.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed, but a field is wrong; the message names it.
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but the role lacks the permission the message names.
    #[error("{0}")]
    Forbidden(String),
    /// Missing, or another tenant's (never 403 for those: no information leaks).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("rate limit exceeded: retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn not_found(what: &str, key: impl std::fmt::Display) -> ApiError {
        ApiError::NotFound(format!("{what} {key} not found"))
    }
}

/// Machine-readable code of a status.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

fn envelope(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code_of(status), "message": message}}))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(e) = &self {
            // The detail goes to the log, never to the client.
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let mut response = envelope(status, &self.to_string());
        if let ApiError::RateLimited { retry_after_secs } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            match db.code().as_deref() {
                Some("23505") => {
                    return ApiError::Conflict(format!("already exists ({})", db.constraint().unwrap_or("unique")))
                }
                Some("23503") => {
                    return ApiError::Conflict(format!("still referenced by another record ({})", db.message()));
                }
                Some("23514") => return ApiError::Unprocessable(format!("value not allowed ({})", db.message())),
                // A deadlock or serialization failure with a concurrent change: nothing was
                // written; the same request can simply be sent again.
                Some("40P01" | "40001") => {
                    return ApiError::Unavailable(
                        "the request collided with a concurrent change and was not applied; retry it".into(),
                    );
                }
                // Text or JSON the database cannot hold (a NUL character, a bad escape).
                Some(code) if code.starts_with("22") => {
                    return ApiError::BadRequest(format!(
                        "the request holds a value the database cannot store: {}",
                        db.message()
                    ));
                }
                _ => {}
            }
        }
        if matches!(e, sqlx::Error::RowNotFound) {
            return ApiError::NotFound("not found".into());
        }
        ApiError::Internal(e.into())
    }
}

/// Rewrites error responses that are not JSON (axum's 405, tower-http's 413 and 408, a
/// panic caught as 500) into the JSON envelope, keeping their status and headers.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.ok().and_then(|b| String::from_utf8(b.to_vec()).ok());
    let message = match text {
        Some(t) if !t.trim().is_empty() && status.is_client_error() => t.trim().to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let new = envelope(status, &message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::new(new.into_body()))
}
