//! The OpenAPI document's frame; the paths come from the routers (`utoipa_axum::routes!`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Attune", description = "Event-driven automation on PostgreSQL. Errors are {\"error\": {\"code\", \"message\"}}."),
    modifiers(&BearerAuth),
    tags(
        (name = "health"), (name = "auth"), (name = "users"), (name = "packs"), (name = "actions"),
        (name = "triggers"), (name = "rules"), (name = "sensors"), (name = "events"), (name = "executions"), (name = "audit"), (name = "workers")
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
