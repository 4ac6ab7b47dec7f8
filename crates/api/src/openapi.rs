//! The OpenAPI document's frame; the paths come from the routers (`utoipa_axum::routes!`).
//!
//! Error answers: each route's `#[utoipa::path]` declares those its own handler gives
//! (403 for a permission or a policy, 404 for a missing resource, 409, ...);
//! [`document_errors`] adds those the shared machinery gives every operation that uses it,
//! so they cannot be forgotten: 401 and 429 with a bearer token (the `Principal` extractor
//! and the per-user rate limit), 400, 413 and 422 with a JSON body (`ApiJson`, the body
//! limit; no 422 for [`RAW_BODY_PATHS`], which read the raw bytes), 400 with query or path
//! parameters (`ApiQuery`, `ApiPath`). Every error answer carries the `ErrorBody` schema.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Header, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema};

use crate::error::{ErrorBody, ErrorDetail};

#[derive(OpenApi)]
#[openapi(
    info(title = "Attune", description = "Event-driven automation on PostgreSQL. Errors are {\"error\": {\"code\", \"message\"}} (schema ErrorBody)."),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "health"), (name = "auth"), (name = "users"), (name = "packs"), (name = "actions"),
        (name = "triggers"), (name = "rules"), (name = "sensors"), (name = "events"), (name = "executions"), (name = "inquiries"), (name = "audit"), (name = "workers")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Routes that take their body as raw bytes rather than through `ApiJson` (no 422).
pub const RAW_BODY_PATHS: &[&str] = &["/api/v1/webhooks/{key}"];

/// What a status means when the route says nothing more precise.
fn default_description(status: &str) -> &'static str {
    match status {
        "400" => "malformed request: not JSON, or a bad query or path parameter",
        "401" => "missing, malformed, expired or forged bearer token",
        "403" => "the caller may not do this; the message says why",
        "404" => "not found, or not the caller's",
        "409" => "conflicts with the current state; the message says how",
        "413" => "request body too large (api.max_body_bytes)",
        "422" => "a field is missing, unknown, of the wrong type or has a bad value; the message names it",
        "429" => "rate limited; Retry-After says when to retry",
        "503" => "unavailable, or collided with a concurrent change; retry",
        _ => "error",
    }
}

/// Completes every operation's error answers (see the module doc) and gives each error
/// answer the `ErrorBody` schema (and 429 its `Retry-After` header).
pub fn document_errors(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let raw_body = RAW_BODY_PATHS.contains(&path.as_str());
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            complete(operation, raw_body);
        }
    }
}

fn complete(op: &mut Operation, raw_body: bool) {
    let mut implied: Vec<&str> = Vec::new();
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        implied.extend(["401", "429"]);
    }
    if op.request_body.is_some() {
        implied.extend(["400", "413"]);
        if !raw_body {
            implied.push("422");
        }
    }
    let params = op.parameters.as_deref().unwrap_or_default();
    if params.iter().any(|p| matches!(p.parameter_in, ParameterIn::Query | ParameterIn::Path)) {
        implied.push("400");
    }
    let responses = &mut op.responses.responses;
    for status in implied {
        responses.entry(status.to_string()).or_insert_with(|| RefOr::T(Response::new("")));
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else { continue };
        if !status.starts_with('4') && !status.starts_with('5') {
            continue;
        }
        if response.description.is_empty() {
            response.description = default_description(status).to_string();
        }
        if response.content.is_empty() {
            let body = Content::new(Some(Ref::from_schema_name("ErrorBody")));
            response.content.insert("application/json".into(), body);
        }
        if status == "429" && !response.headers.contains_key("Retry-After") {
            let mut header = Header::new(u64::schema());
            header.description = Some("seconds to wait before retrying".into());
            response.headers.insert("Retry-After".into(), header);
        }
    }
}
