//! The web console (docs/console.md): a single-page app of a few hand-written files under
//! `crates/api/console/`, embedded in the binary and served at `GET /` (the page) and
//! `GET /console/<asset>` (its scripts and stylesheet). No build step, no CDN: what is in
//! that folder is what the browser runs.
//!
//! The page is public (it logs in itself through `POST /auth/login`); everything it shows
//! comes from the REST API and the `/ws` stream with the user's token. Every answer carries
//! a strict Content-Security-Policy: scripts and styles only from this origin, no inline
//! code, connections only back to this origin (HTTP and WebSocket).

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Scripts, styles, images and connections from this origin only; no inline script or
/// style (the page has none), no plugins, no framing, forms post nowhere else.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; \
                   frame-ancestors 'none'; form-action 'self'";

/// One embedded file.
struct Asset {
    /// Its path under `crates/api/console/` (and under `/console/`).
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset { path: $path, content_type: $content_type, body: include_str!(concat!("../console/", $path)) }
    };
}

/// Every file of the console. (A unit test checks that the folder holds no other file.)
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("stream.js", JS),
    asset!("dom.js", JS),
    asset!("forms.js", JS),
    asset!("views/dashboard.js", JS),
    asset!("views/executions.js", JS),
    asset!("views/execution.js", JS),
    asset!("views/inquiries.js", JS),
    asset!("views/rules.js", JS),
    asset!("views/packs.js", JS),
    asset!("views/datastore.js", JS),
];

/// `GET /` and `GET /console/{*path}`, outside the OpenAPI document (they are not API).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) })).route(
        "/console/{*path}",
        get(|Path(path): Path<String>, headers: HeaderMap| async move { serve(&path, &headers) }),
    )
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return ApiError::NotFound(format!("no console file {}", crate::error::excerpt(path))).into_response();
    };
    // The files change only with the binary: the browser revalidates each load (no-cache)
    // and gets a 304 while the content hash matches.
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(asset.body.as_bytes())[..12]));
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == etag);
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.body.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex is a valid header value"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under console/ is embedded, so a new view cannot be forgotten.
    #[test]
    fn every_console_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    found.push(path.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/"));
                }
            }
        }
        found.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(found, embedded);
    }

    #[test]
    fn the_page_has_no_inline_script() {
        let page = ASSETS[0].body;
        assert!(!page.contains("<script>") && !page.contains("style="), "inline code would be refused by the CSP");
        let handler = page
            .split(" on")
            .skip(1)
            .any(|rest| rest.split_once('=').is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase())));
        assert!(!handler, "no inline event handlers");
        assert!(page.contains(r#"<script type="module" src="/console/app.js">"#));
    }
}
