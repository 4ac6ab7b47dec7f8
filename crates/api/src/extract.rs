//! Extractors whose rejections are JSON errors naming the problem (axum's own answer
//! with plain text), and [`ClientIp`], the socket peer of a request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{excerpt, ApiError};

/// A JSON body. Not complete, valid JSON (a truncated body included): 400. Well-formed
/// JSON of the wrong shape (missing or unknown field, wrong type): 422, the message naming
/// the field. Too large: 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The whole document is parsed before its shape is checked: read field by field,
        // a body cut short after `{"ref": ` would otherwise fail on the field, not the end.
        let axum::Json(document) = axum::Json::<Value>::from_request(req, state).await?;
        serde_path_to_error::deserialize(document).map(ApiJson).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." => ApiError::Unprocessable(e.into_inner().to_string()),
                // The path is made of the body's own keys: quoted like any input.
                _ => ApiError::Unprocessable(format!("{}: {}", excerpt(&path), e.into_inner())),
            }
        })
    }
}

/// A query string; a bad one is 400 naming the parameter.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters; a bad one (`/actions/abc` for an id) is 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let text = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) => ApiError::Unprocessable(text),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::BadRequest("expected a JSON body with Content-Type: application/json".into())
            }
            JsonRejection::BytesRejection(b) if b.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge
            }
            _ => ApiError::BadRequest(text),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// The address of the socket peer (`serve` records it); requests served without it
/// (a router used on its own) share the unspecified address, so they are still throttled
/// together. A proxy in front makes every client the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}
