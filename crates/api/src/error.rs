//! The one place where failures become HTTP answers:
//! `{"error": {"code": "...", "message": "..."}}` with a precise status.
//!
//! Handlers return [`ApiError`]; axum's own extractor rejections are converted by the
//! extractors of [`crate::extract`]; anything else that leaves the router as a non-JSON
//! error (a 405, a 413 from the body limit, a timeout) is rewritten by [`json_errors`].
//!
//! A message quotes at most [`EXCERPT_CHARS`] characters of any input: sites that echo
//! input use [`excerpt`], and every message leaving here has its quoted spans (serde's,
//! PostgreSQL's and the core's messages quote values whole) cut the same way.

use std::borrow::Cow;

use attune_core::quoting;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// The body of every error answer (`ErrorBody` in the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `validation_failed`, `rate_limited`, `unavailable`, `internal`, ...
    pub code: String,
    /// What went wrong, naming the field, permission or setting; it quotes at most 200
    /// characters of any input.
    pub message: String,
}

/// How many characters of an input an error message may quote.
pub const EXCERPT_CHARS: usize = 200;

/// `input` as an error message may quote it: at most [`EXCERPT_CHARS`] characters, cut
/// with an ellipsis.
pub fn excerpt(input: &str) -> Cow<'_, str> {
    quoting::excerpt(input, EXCERPT_CHARS)
}

/// `message` with each quoted span (`"..."`, with backslash escapes, or `` `...` ``) cut to
/// an [`excerpt`]; an unclosed quote runs to the end.
pub fn clip_quoted(message: &str) -> Cow<'_, str> {
    if message.chars().count() <= EXCERPT_CHARS {
        return Cow::Borrowed(message);
    }
    Cow::Owned(quoting::clip_quoted(message, EXCERPT_CHARS))
}

/// No answer carries more than this (a pack with many bad files lists them all).
const MAX_MESSAGE_CHARS: usize = 16 * 1024;

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
    /// Too much work queued right now: 503 with `Retry-After: 1`.
    #[error("{0}")]
    Overloaded(String),
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
            ApiError::Unavailable(_) | ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
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
    let mut message = clip_quoted(message).into_owned();
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    let body = ErrorBody { error: ErrorDetail { code: code_of(status).to_string(), message } };
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(e) = &self {
            // The detail goes to the log, never to the client.
            tracing::error!(error = format!("{e:#}"), "internal error");
        }
        let mut response = envelope(status, &self.to_string());
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Overloaded(_) => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_cut_long_input_with_an_ellipsis() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(500);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn quoted_spans_are_clipped_and_the_rest_kept() {
        let long = "x".repeat(1000);
        let message = format!("invalid type: string {long:?}, expected a map; unknown field `{long}`, expected `a`");
        let clipped = clip_quoted(&message);
        assert!(!clipped.contains(&"x".repeat(EXCERPT_CHARS + 1)), "{clipped}");
        assert!(clipped.starts_with("invalid type: string \"xxx"));
        assert!(clipped.contains("…\", expected a map; unknown field `xxx"), "{clipped}");
        assert!(clipped.ends_with("…`, expected `a`"), "{clipped}");
        // Escaped quotes stay inside their span; an unclosed quote runs to the end.
        let escaped = format!("bad {:?} here", format!("a\"{long}"));
        assert!(clip_quoted(&escaped).ends_with("…\" here"), "{}", clip_quoted(&escaped));
        let unclosed = format!("{long} and \"{long}");
        assert!(clip_quoted(&unclosed).ends_with('…'));
    }
}
