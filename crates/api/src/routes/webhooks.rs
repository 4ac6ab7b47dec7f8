//! `POST /api/v1/webhooks/{key}`: the unauthenticated ingress. The key inside a webhook
//! trigger's URL is the credential (256 random bits); a trigger with a `webhook_secret`
//! also requires `X-Attune-Signature: sha256=<hex HMAC-SHA256 of the body>`.
//! Answers 202 with the event id once the event is committed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::de::IgnoredAny;
use serde::Serialize;
use sha2::Sha256;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::ingest::{Stored, Webhook};
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(receive))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    event_id: i64,
}

struct WebhookTrigger {
    trigger_ref: String,
    webhook_secret: Option<String>,
    enabled: bool,
}

/// Checks `X-Attune-Signature: sha256=<hex>` against the body, in constant time.
fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let header = headers.get("x-attune-signature").ok_or_else(|| {
        ApiError::Unauthorized("this webhook requires an X-Attune-Signature: sha256=<hex HMAC> header".into())
    })?;
    let given = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig.trim()).ok())
        .ok_or_else(|| {
            ApiError::Unauthorized("X-Attune-Signature must be sha256=<hex HMAC-SHA256 of the body>".into())
        })?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| ApiError::Unauthorized("X-Attune-Signature does not match the body".into()))
}

/// Fires the webhook trigger whose URL holds `key` with the JSON body as payload.
#[utoipa::path(post, path = "/api/v1/webhooks/{key}", tag = "events", params(("key" = String, Path)),
    request_body(content = Object, description = "any JSON, at most 1 MiB"),
    responses((status = 202, body = Accepted), (status = 400), (status = 401), (status = 404), (status = 409), (status = 413), (status = 503)))]
async fn receive(
    State(state): State<ApiState>,
    ApiPath(key): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let answer = accept(state, key, headers, body).await;
    attune_core::metrics::webhook(answer.is_ok());
    if answer.is_ok() {
        attune_core::metrics::events_created("webhook", 1);
    }
    answer
}

/// [`receive`]'s work; the wrapper counts its outcome (`attune_webhooks_total`).
///
/// The event is written by the intake's group commit ([`crate::ingest`]). Fast path: an
/// enabled trigger without a secret takes any JSON body, so the request goes straight to
/// the intake. Only when that writes nothing (a secret to check, a disabled or unknown
/// key) does the handler read the trigger to give the precise answer.
async fn accept(
    state: ApiState,
    key: String,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let arrived = Utc::now();
    // Checked here, once: the intake hands PostgreSQL the text as it came.
    let json: Result<Arc<str>, String> = match serde_json::from_slice::<IgnoredAny>(&body) {
        Ok(_) => std::str::from_utf8(&body).map(Arc::from).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Ok(text) = &json {
        let webhook = Webhook { key: key.clone(), body: text.clone(), verified: false, arrived };
        if let Stored::Event(event_id) = state.ingest.store(webhook).await? {
            return Ok((StatusCode::ACCEPTED, Json(Accepted { event_id })));
        }
    }
    let trigger = sqlx::query_as!(
        WebhookTrigger,
        "SELECT ref AS trigger_ref, webhook_secret, enabled FROM attune.trigger
          WHERE webhook_key = $1 AND type = 'webhook'",
        key
    )
    .fetch_optional(state.pool())
    .await?;
    let Some(WebhookTrigger { trigger_ref, webhook_secret: secret, enabled }) = trigger else {
        return Err(ApiError::NotFound("no webhook with this key".into()));
    };
    let verified = secret.is_some();
    if let Some(secret) = secret {
        verify_signature(&secret, &headers, &body)?;
    }
    if !enabled {
        return Err(ApiError::Conflict(format!("trigger {trigger_ref} is disabled")));
    }
    let text = json.map_err(|why| ApiError::BadRequest(format!("the body is not JSON: {why}")))?;
    match state.ingest.store(Webhook { key, body: text, verified, arrived }).await? {
        Stored::Event(event_id) => Ok((StatusCode::ACCEPTED, Json(Accepted { event_id }))),
        // Disabled, removed or given a new secret between the read and the write.
        Stored::NoTrigger => Err(ApiError::Conflict(format!(
            "trigger {trigger_ref} changed while the request was handled; send it again"
        ))),
    }
}
