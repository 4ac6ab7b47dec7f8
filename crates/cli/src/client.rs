//! The HTTP client of the REST API: bearer token from the profile (refreshed a minute
//! before it expires, and once more when the server answers 401), JSON in and out, the
//! API's `{"error": {...}}` answers turned into [`CliError::Api`], and a server that cannot
//! be reached into an error that says how to start or point at one.

use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::error::{ApiFailure, CliError};
use crate::profile::{self, Credentials, Store, Target, TokenSource};

/// How long before expiry an access token is refreshed.
const REFRESH_MARGIN_SECS: i64 = 60;

/// A request body.
pub enum Body {
    None,
    Json(Value),
    /// Raw bytes with their Content-Type (a pack archive).
    Bytes(&'static str, Vec<u8>),
}

/// One page of a list: `{"data", "total", "limit", "offset"}`.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Value>,
    pub total: i64,
}

pub struct Api {
    http: reqwest::Client,
    /// `http://host:port`, no trailing slash.
    pub url: String,
    pub profile: String,
    auth: Mutex<Auth>,
}

enum Auth {
    None,
    Env(String),
    Stored(Store, Credentials),
}

impl Api {
    /// A client for the server and token of `profile` (or the environment's).
    pub fn connect(profile: Option<&str>) -> Result<Api, CliError> {
        let Target { url, profile, token } = profile::resolve(profile)?;
        let auth = match token {
            TokenSource::Env(t) => Auth::Env(t),
            TokenSource::Stored(store, credentials) => Auth::Stored(store, credentials),
        };
        Ok(Api { http: http_client(), url, profile, auth: Mutex::new(auth) })
    }

    /// A client without a token (for `attune login`).
    pub fn anonymous(url: &str) -> Api {
        Api { http: http_client(), url: url.to_string(), profile: String::new(), auth: Mutex::new(Auth::None) }
    }

    /// A valid access token (refreshed first when it is about to expire).
    pub async fn token(&self) -> Result<String, CliError> {
        let mut auth = self.auth.lock().await;
        match &mut *auth {
            Auth::None => {
                Err(CliError::config(format!("not logged in to {}: run `attune login --url {}`", self.url, self.url)))
            }
            Auth::Env(token) => Ok(token.clone()),
            Auth::Stored(store, credentials) => {
                if (credentials.expires_at - Utc::now()).num_seconds() > REFRESH_MARGIN_SECS {
                    return Ok(credentials.access_token.clone());
                }
                let fresh = self.refresh(store, credentials).await?;
                *credentials = fresh;
                Ok(credentials.access_token.clone())
            }
        }
    }

    /// After a 401 with a stored token: refresh once. False when there is nothing to
    /// refresh (a token from the environment, or none).
    async fn refresh_after_401(&self, rejected: &str) -> Result<bool, CliError> {
        let mut auth = self.auth.lock().await;
        let Auth::Stored(store, credentials) = &mut *auth else { return Ok(false) };
        if credentials.access_token != rejected {
            return Ok(true); // another request refreshed it meanwhile
        }
        // Make the stored token count as expired so the refresh cannot reuse it.
        credentials.expires_at = Utc::now();
        let fresh = self.refresh(store, credentials).await?;
        *credentials = fresh;
        Ok(true)
    }

    /// Exchanges the refresh token for a new pair, under the profile's refresh lock.
    async fn refresh(&self, store: &Store, ours: &Credentials) -> Result<Credentials, CliError> {
        let _lock = store.refresh_lock(&self.profile)?;
        // Another `attune` process may have refreshed since we read the file: its tokens
        // are the current ones and ours are already spent.
        let current = store.credentials(&self.profile)?.unwrap_or_else(|| ours.clone());
        if current.access_token != ours.access_token
            && (current.expires_at - Utc::now()).num_seconds() > REFRESH_MARGIN_SECS
        {
            return Ok(current);
        }
        let url = format!("{}/auth/refresh", self.url);
        let res = self
            .http
            .post(&url)
            .json(&json!({"refresh_token": current.refresh_token}))
            .send()
            .await
            .map_err(|e| unreachable(&self.url, &e))?;
        if res.status() == StatusCode::UNAUTHORIZED {
            return Err(CliError::config(format!(
                "your session on {} has ended (the refresh token was refused): run `attune login --url {}`",
                self.url, self.url
            )));
        }
        let body = answer("POST /auth/refresh", res).await?;
        let fresh = credentials_from(&body)?;
        store.save_credentials(&self.profile, &fresh)?;
        Ok(fresh)
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.send(Method::GET, path, query, Body::None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.send(Method::POST, path, &[], Body::Json(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Result<Value, CliError> {
        self.send(Method::PATCH, path, &[], Body::Json(body)).await
    }

    pub async fn delete(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.send(Method::DELETE, path, query, Body::None).await
    }

    /// One page of a list endpoint.
    pub async fn list(&self, path: &str, query: &[(&str, String)]) -> Result<Page, CliError> {
        let body = self.get(path, query).await?;
        let items = body["data"].as_array().cloned().unwrap_or_default();
        let total = body["total"].as_i64().unwrap_or(items.len() as i64);
        Ok(Page { items, total })
    }

    /// Sends an authenticated request; on a 401 with a stored token, refreshes and retries once.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Body,
    ) -> Result<Value, CliError> {
        let token = self.token().await?;
        let res = self.request(&method, path, query, &body, &token).await?;
        let res = if res.status() == StatusCode::UNAUTHORIZED && self.refresh_after_401(&token).await? {
            let token = self.token().await?;
            self.request(&method, path, query, &body, &token).await?
        } else {
            res
        };
        let env_token = matches!(*self.auth.lock().await, Auth::Env(_));
        match answer(&format!("{method} {path}"), res).await {
            Err(CliError::Api(f)) if f.status == 401 && env_token => Err(CliError::config(format!(
                "ATTUNE_TOKEN was refused by {} ({}): set a valid access token, or unset it and run `attune login`",
                self.url, f.message
            ))),
            other => other,
        }
    }

    /// Sends a request without a token (login).
    pub async fn send_anonymous(&self, method: Method, path: &str, body: Value) -> Result<Value, CliError> {
        let res = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(&self.url, &e))?;
        answer(&format!("{method} {path}"), res).await
    }

    /// POSTs `body` to an absolute URL without a token (a webhook), with extra headers.
    pub async fn post_url(&self, url: &str, body: Vec<u8>, headers: &[(&str, String)]) -> Result<Value, CliError> {
        let mut req = self.http.post(url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let res = req.send().await.map_err(|e| unreachable(&self.url, &e))?;
        answer(&format!("POST {url}"), res).await
    }

    async fn request(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: &Body,
        token: &str,
    ) -> Result<reqwest::Response, CliError> {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.url)).bearer_auth(token);
        if !query.is_empty() {
            req = req.query(query);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req.json(v),
            Body::Bytes(content_type, bytes) => {
                req.header(reqwest::header::CONTENT_TYPE, *content_type).body(bytes.clone())
            }
        };
        req.send().await.map_err(|e| unreachable(&self.url, &e))
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("attune-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        // Generous: a pack upload installs the pack's dependencies before it answers.
        .timeout(Duration::from_secs(600))
        .build()
        .expect("the HTTP client builds")
}

/// The tokens of a login or refresh answer.
pub fn credentials_from(body: &Value) -> Result<Credentials, CliError> {
    let field = |name: &str| {
        body[name].as_str().map(str::to_string).ok_or_else(|| {
            CliError::Unreachable(format!("the server's token answer has no {name}: is this an Attune server?"))
        })
    };
    let expires_in = body["expires_in"].as_i64().unwrap_or(3600);
    Ok(Credentials {
        access_token: field("access_token")?,
        refresh_token: field("refresh_token")?,
        expires_at: Utc::now() + chrono::Duration::seconds(expires_in),
    })
}

/// The JSON of a success, or the API's error as [`CliError::Api`].
async fn answer(request: &str, res: reqwest::Response) -> Result<Value, CliError> {
    let status = res.status();
    let header = |name: &str| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (request_id, retry_after) = (header("x-request-id"), header("retry-after"));
    let bytes =
        res.bytes().await.map_err(|e| CliError::Unreachable(format!("{request}: the answer broke off: {e}")))?;
    if status.is_success() {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        return serde_json::from_slice(&bytes).map_err(|_| {
            CliError::Unreachable(format!(
                "{request}: the answer is not JSON ({}): is the URL an Attune server?",
                excerpt(&String::from_utf8_lossy(&bytes))
            ))
        });
    }
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let (code, message) = match parsed.as_ref().map(|v| &v["error"]) {
        Some(e) if e.is_object() => {
            (e["code"].as_str().unwrap_or_default().to_string(), e["message"].as_str().unwrap_or_default().to_string())
        }
        _ => (String::new(), excerpt(&String::from_utf8_lossy(&bytes))),
    };
    Err(CliError::Api(Box::new(ApiFailure {
        request: request.to_string(),
        status: status.as_u16(),
        code,
        message,
        request_id,
        retry_after,
    })))
}

/// The error for a request that reached no server.
pub fn unreachable(url: &str, e: &reqwest::Error) -> CliError {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        return CliError::Unreachable(format!(
            "{url} did not answer in time ({cause}): is the server overloaded or stuck?"
        ));
    }
    CliError::Unreachable(format!(
        "cannot reach the Attune server at {url}: {cause}\nis it running? `attune up` starts one; \
         `attune login --url URL` (or ATTUNE_URL) points the CLI at another"
    ))
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
