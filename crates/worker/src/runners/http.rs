//! The `http` runner: the action's `http` block describes one HTTP call, made by the
//! worker's own process (no child process: a call mostly waits on the network, so it runs
//! in the in-process lane, bounded by that lane's slots and by its timeout).
//!
//! - **templates**: every string of the block is a minijinja template, rendered as rule
//!   templates are ([`templates::render_value`]: a string that is exactly one `{{ expr }}`
//!   keeps the value's JSON type). The context: `params` (the execution's parameters,
//!   secret ones in plaintext; `parameters` is the same), `secret` (the action's declared
//!   datastore secrets, by key) and `context` (`execution_id`, `action_ref`, `api_url`,
//!   `api_token`, `attempt`, as a process action gets on stdin).
//! - **request**: `method` (default GET; one of [`HTTP_METHODS`]), `url` (http or https),
//!   `headers` and `query` (a value that renders to null is left out; other non-strings
//!   are sent as their JSON text; a query list repeats its name), `body` (a string is sent
//!   as it is; any other JSON value as JSON, with `Content-Type: application/json` unless
//!   the headers set one; absent or null: no body).
//! - **bounds**: the whole call — connecting, sending, reading the answer — ends within the
//!   action's timeout, or `http.timeout_seconds` when that is shorter (`failure_reason:
//!   "timeout"`); connecting alone within [`CONNECT_TIMEOUT`]; at most [`MAX_REDIRECTS`]
//!   redirects; TLS through rustls; the answer's body read up to `max_output_bytes`.
//! - **result**: `result.output = {"status_code", "headers", "body"}`; the body is parsed
//!   when the answer says it is JSON (and came whole), else it is text; a body cut at
//!   `max_output_bytes` sets `result.truncated`. A status of 400 or more fails the execution
//!   (the error names the status) and keeps the answer in `result.output`.
//! - **refusals**: an action with `network: false` is not run (the call needs the
//!   network); neither is a block whose rendered values are not a valid request (the error
//!   names the field). A cancel request aborts the call.

use std::sync::OnceLock;
use std::time::Duration;

use attune_core::domain::templates;
use attune_core::pack::spec::{check_http, HTTP_METHODS};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{redirect, Client, Method, Url};
use serde_json::{json, Map, Value};

use super::{Job, Outcome};

/// Redirects followed at most; one more fails the call.
pub const MAX_REDIRECTS: usize = 5;
/// How long connecting (TCP and TLS) may take, at most.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One client for every call of the process: connections (and TLS sessions) are reused.
fn client() -> Result<&'static Client, String> {
    static CLIENT: OnceLock<Result<Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            Client::builder()
                .use_rustls_tls()
                .redirect(redirect::Policy::limited(MAX_REDIRECTS))
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("attune/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot set up the HTTP client: {}", chain(&e)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

pub async fn run(job: &Job) -> Outcome {
    if !job.network {
        return Outcome::failed(format!(
            "action {} has network: false, and an http action needs the network: it did not run",
            job.action_ref
        ));
    }
    let Some(block) = &job.http else {
        return Outcome::failed(format!("action {} has no http block: there is nothing to call", job.action_ref));
    };
    let request = match Request::render(job, block) {
        Ok(r) => r,
        Err(e) => return Outcome::failed(e),
    };
    let client = match client() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e),
    };
    let (timeout, by_block) = match request.timeout {
        Some(t) if t < job.timeout => (t, " (http.timeout_seconds)"),
        _ => (job.timeout, ""),
    };
    let summary = request.summary();
    tokio::select! {
        biased;
        _ = job.cancel.cancelled() => Outcome::canceled(),
        done = tokio::time::timeout(timeout, request.send(client, job.max_output_bytes)) => match done {
            Ok(outcome) => outcome,
            Err(_) => {
                let mut out =
                    Outcome::failed(format!("{summary} timed out after {} s{by_block}", timeout.as_secs()));
                out.failure_reason = Some("timeout");
                out
            }
        },
    }
}

/// A rendered, checked request.
#[derive(Debug)]
struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    query: Vec<(String, String)>,
    /// The bytes, and whether they are JSON the block gave as a value.
    body: Option<(Vec<u8>, bool)>,
    /// `http.timeout_seconds`.
    timeout: Option<Duration>,
}

impl Request {
    /// The block's templates rendered over the job's parameters and secrets, and the
    /// result checked; errors name the field.
    fn render(job: &Job, block: &Value) -> Result<Request, String> {
        check_http(block).map_err(|e| format!("{}: {}", e.field, e.message))?;
        let context = json!({
            "params": job.parameters,
            "parameters": job.parameters,
            "secret": job.secrets,
            "context": {
                "execution_id": job.execution_id,
                "action_ref": job.action_ref,
                "api_url": job.api_url,
                "api_token": job.api_token,
                "attempt": job.attempt,
            },
        });
        let rendered = templates::render_value(&templates::environment(), "http", block, &context)?;
        let field = |name: &str| rendered.get(name).filter(|v| !v.is_null());

        let method = match field("method") {
            None => Method::GET,
            Some(Value::String(m)) if HTTP_METHODS.contains(&m.trim().to_ascii_uppercase().as_str()) => {
                Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes()).map_err(|e| format!("http.method: {e}"))?
            }
            Some(other) => {
                return Err(format!("http.method: renders to {other}, not one of {}", HTTP_METHODS.join(", ")));
            }
        };
        let url = match field("url") {
            Some(Value::String(u)) => Url::parse(u.trim()).map_err(|e| format!("http.url: {u:?} is not a URL: {e}"))?,
            other => return Err(format!("http.url: renders to {}, not a URL", other.unwrap_or(&Value::Null))),
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("http.url: scheme {:?} is not supported: use http or https", url.scheme()));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in field("headers").and_then(Value::as_object).into_iter().flatten() {
            let Some(text) = as_text(value) else { continue };
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("http.headers.{name}: not a valid header name"))?;
            let value = HeaderValue::from_str(&text).map_err(|_| {
                format!("http.headers.{name}: the rendered value is not a valid header value (line breaks or control characters)")
            })?;
            headers.append(header, value);
        }
        let mut query = Vec::new();
        for (name, value) in field("query").and_then(Value::as_object).into_iter().flatten() {
            match value {
                Value::Array(items) => query.extend(items.iter().filter_map(as_text).map(|v| (name.clone(), v))),
                other => query.extend(as_text(other).map(|v| (name.clone(), v))),
            }
        }
        let body = match field("body") {
            None => None,
            Some(Value::String(s)) => Some((s.clone().into_bytes(), false)),
            Some(other) => Some((serde_json::to_vec(other).map_err(|e| format!("http.body: {e}"))?, true)),
        };
        let timeout = field("timeout_seconds").and_then(Value::as_u64).map(Duration::from_secs);
        Ok(Request { method, url, headers, query, body, timeout })
    }

    /// `POST https://host/path`: no credentials, no query (for messages and stdout).
    fn summary(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.set_fragment(None);
        let _ = url.set_password(None);
        let _ = url.set_username("");
        format!("{} {url}", self.method)
    }

    async fn send(self, client: &Client, max_output_bytes: usize) -> Outcome {
        let summary = self.summary();
        let mut builder = client.request(self.method, self.url).headers(self.headers.clone());
        if !self.query.is_empty() {
            builder = builder.query(&self.query);
        }
        if let Some((bytes, json)) = self.body {
            if json && !self.headers.contains_key(CONTENT_TYPE) {
                builder = builder.header(CONTENT_TYPE, "application/json");
            }
            builder = builder.body(bytes);
        }
        let mut response = match builder.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::failed(format!("{summary} failed: {}", describe(e))),
        };
        let status = response.status();
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
            .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
        let headers = headers_json(response.headers());
        let (bytes, truncated) = match read_body(&mut response, max_output_bytes).await {
            Ok(read) => read,
            Err(e) => {
                return Outcome::failed(format!("{summary}: reading the answer ({status}) failed: {}", describe(e)))
            }
        };
        let body = match (is_json && !truncated).then(|| serde_json::from_slice::<Value>(&bytes)) {
            Some(Ok(value)) => value,
            _ => Value::String(text(&bytes, truncated)),
        };
        let succeeded = status.as_u16() < 400;
        Outcome {
            succeeded,
            exit_code: None,
            stdout: format!("{summary}: {status}\n"),
            stderr: String::new(),
            truncated,
            output: Some(json!({"status_code": status.as_u16(), "headers": headers, "body": body})),
            error: (!succeeded).then(|| format!("{summary}: the server answered {status}")),
            failure_reason: None,
        }
    }
}

/// A header or query value as text: strings as they are, other values as JSON; None for
/// null (left out).
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The answer's headers by name (lower-case); a repeated header's values joined by `, `.
fn headers_json(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        match out.get_mut(name.as_str()) {
            Some(Value::String(seen)) => {
                seen.push_str(", ");
                seen.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(value.into_owned()));
            }
        }
    }
    Value::Object(out)
}

/// The answer's body, up to `max` bytes; true when there was more.
async fn read_body(response: &mut reqwest::Response, max: usize) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max.saturating_sub(body.len());
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// Bytes as text (invalid UTF-8 replaced); a character cut by truncation is dropped.
fn text(bytes: &[u8], truncated: bool) -> String {
    let whole = match std::str::from_utf8(bytes) {
        Err(e) if truncated && e.error_len().is_none() => &bytes[..e.valid_up_to()],
        _ => bytes,
    };
    String::from_utf8_lossy(whole).into_owned()
}

/// What went wrong with a call, without the URL (the summary names it, without its query
/// and credentials) and without the client's generic wrappers.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_redirect() {
        return format!("more than {MAX_REDIRECTS} redirects");
    }
    let full = chain(&e);
    let cause = full
        .split(": ")
        .skip_while(|part| part.starts_with("error sending request") || part.starts_with("client error ("))
        .collect::<Vec<_>>()
        .join(": ");
    let cause = if cause.is_empty() { full } else { cause };
    if e.is_connect() {
        format!("cannot connect: {cause}")
    } else {
        cause
    }
}

/// An error and its sources, `: `-separated, each said once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use attune_core::domain::RunnerType;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap as Headers, Method as Verb, StatusCode, Uri};
    use axum::response::{AppendHeaders, IntoResponse, Redirect};
    use axum::routing::{any, get};
    use axum::Router;

    use super::*;
    use crate::masking::Masker;
    use crate::runners::tests::job;

    /// A request the test server received.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        uri: String,
        headers: Headers,
        body: Vec<u8>,
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// Records the request and answers 201 with what it saw, as JSON.
    async fn echo(State(log): State<Log>, method: Verb, uri: Uri, headers: Headers, body: Bytes) -> impl IntoResponse {
        let answer = json!({
            "method": method.as_str(),
            "authorization": headers.get("authorization").and_then(|v| v.to_str().ok()),
            "body": String::from_utf8_lossy(&body),
        });
        log.lock().unwrap().push(Seen {
            method: method.to_string(),
            uri: uri.to_string(),
            headers,
            body: body.to_vec(),
        });
        (StatusCode::CREATED, AppendHeaders([("x-seen", "1"), ("x-seen", "2")]), axum::Json(answer))
    }

    /// A real HTTP server on 127.0.0.1: its base URL and the requests it saw.
    async fn server() -> (String, Log) {
        let log = Log::default();
        let app = Router::new()
            .route("/echo", any(echo))
            .route("/fail", any(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database on fire") }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/big", get(|| async { "é".repeat(5000) }))
            .route("/loop", get(|| async { Redirect::temporary("/loop") }))
            .route("/hop", get(|| async { Redirect::temporary("/echo") }))
            .with_state(log.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), log)
    }

    fn http_job(block: Value, parameters: Value) -> Job {
        let mut j = job("p.call", parameters);
        j.runner_type = RunnerType::Http;
        j.http = Some(block);
        j
    }

    #[tokio::test]
    async fn a_templated_call_reaches_the_server_and_its_answer_is_the_output() {
        let (base, log) = server().await;
        let block = json!({
            "method": "post",
            "url": format!("{base}/echo?fixed=1"),
            "headers": {"Authorization": "Bearer {{ params.token }}", "X-Key": "{{ secret.api_key }}",
                        "X-Count": "{{ params.n }}", "X-Gone": "{{ params.missing }}"},
            "query": {"name": "{{ params.name }}", "tag": ["a", "b"], "gone": "{{ params.missing }}"},
            "body": {"name": "{{ params.name }}", "n": "{{ params.n }}", "text": "n={{ parameters.n }}",
                     "execution": "{{ context.execution_id }}"},
        });
        let mut j = http_job(block, json!({"token": "t0k-s3cret", "name": "ann", "n": 3}));
        j.secrets = json!({"api_key": "k3y-value"}).as_object().unwrap().clone();
        j.masker = Masker::new(&[json!("t0k-s3cret"), json!("k3y-value")]).unwrap();
        let out = crate::runners::run(&j).await;
        assert!(out.succeeded, "{out:?}");

        let seen = log.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let req = &seen[0];
        assert_eq!(req.method, "POST");
        assert_eq!(req.uri, "/echo?fixed=1&name=ann&tag=a&tag=b");
        assert_eq!(req.headers["authorization"], "Bearer t0k-s3cret", "the server gets the secret itself");
        assert_eq!(req.headers["x-key"], "k3y-value");
        assert_eq!(req.headers["x-count"], "3");
        assert!(!req.headers.contains_key("x-gone"), "a header rendering to null is left out");
        assert_eq!(req.headers["content-type"], "application/json");
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body, json!({"name": "ann", "n": 3, "text": "n=3", "execution": 1}));

        let output = out.output.unwrap();
        assert_eq!(output["status_code"], 201);
        assert_eq!(output["body"]["method"], "POST", "a JSON answer is parsed: {output}");
        assert_eq!(output["body"]["authorization"], "Bearer ********", "secrets are masked in the output");
        assert_eq!(output["headers"]["content-type"], "application/json");
        assert_eq!(output["headers"]["x-seen"], "1, 2");
        assert_eq!(out.stdout, format!("POST {base}/echo: 201 Created\n"));
        assert_eq!(out.error, None);
    }

    #[tokio::test]
    async fn a_string_body_is_sent_as_it_is_and_get_is_the_default() {
        let (base, log) = server().await;
        let block = json!({"url": format!("{base}/echo"), "method": "PUT",
            "headers": {"Content-Type": "text/plain"}, "body": "{{ params | tojson }}"});
        let out = run(&http_job(block, json!({"a": [1, 2]}))).await;
        assert!(out.succeeded, "{out:?}");
        let out = run(&http_job(json!({"url": format!("{base}/hop")}), json!({}))).await;
        assert_eq!(out.output.unwrap()["status_code"], 201, "a redirect is followed");
        let seen = log.lock().unwrap().clone();
        assert_eq!((seen[0].method.as_str(), seen[0].body.as_slice()), ("PUT", br#"{"a":[1,2]}"#.as_slice()));
        assert_eq!(seen[0].headers["content-type"], "text/plain");
        assert_eq!((seen[1].method.as_str(), seen[1].body.len()), ("GET", 0));
    }

    #[tokio::test]
    async fn an_error_status_fails_the_call_and_keeps_the_answer() {
        let (base, _) = server().await;
        let out = run(&http_job(json!({"url": format!("{base}/fail"), "method": "DELETE"}), json!({}))).await;
        assert!(!out.succeeded);
        assert_eq!(
            out.error.as_deref(),
            Some(format!("DELETE {base}/fail: the server answered 500 Internal Server Error").as_str())
        );
        assert_eq!(out.failure_reason, None);
        let output = out.output.unwrap();
        assert_eq!((output["status_code"].clone(), output["body"].clone()), (json!(500), json!("database on fire")));
    }

    #[tokio::test]
    async fn a_slow_server_times_out() {
        let (base, _) = server().await;
        let mut j = http_job(json!({"url": format!("{base}/slow")}), json!({}));
        j.timeout = Duration::from_secs(1);
        let started = Instant::now();
        let out = run(&j).await;
        assert_eq!(
            (out.failure_reason, out.error.as_deref()),
            (Some("timeout"), Some(format!("GET {base}/slow timed out after 1 s").as_str()))
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let j = http_job(json!({"url": format!("{base}/slow"), "timeout_seconds": 1}), json!({}));
        let out = run(&j).await;
        assert_eq!(out.failure_reason, Some("timeout"));
        assert!(out.error.unwrap().ends_with("after 1 s (http.timeout_seconds)"));
    }

    #[tokio::test]
    async fn a_cancel_aborts_the_call() {
        let (base, _) = server().await;
        let j = http_job(json!({"url": format!("{base}/slow")}), json!({}));
        let cancel = j.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        assert_eq!(run(&j).await, Outcome::canceled());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_long_body_is_cut_at_the_output_bound() {
        let (base, _) = server().await;
        let mut j = http_job(json!({"url": format!("{base}/big")}), json!({}));
        j.max_output_bytes = 1001;
        let out = run(&j).await;
        assert!(out.succeeded && out.truncated, "{out:?}");
        let body = out.output.unwrap()["body"].as_str().unwrap().to_string();
        assert_eq!(body, "é".repeat(500), "cut at a character boundary");
    }

    #[tokio::test]
    async fn calls_that_cannot_be_made_fail_with_a_clear_error() {
        let (base, _) = server().await;
        let error = |j: Job| async move { run(&j).await.error.unwrap() };

        let mut offline = http_job(json!({"url": format!("{base}/echo")}), json!({}));
        offline.network = false;
        assert!(error(offline).await.contains("network: false"));
        let mut none = http_job(json!({}), json!({}));
        none.http = None;
        assert!(error(none).await.contains("no http block"));

        let e = error(http_job(json!({"url": format!("{base}/loop")}), json!({}))).await;
        assert_eq!(e, format!("GET {base}/loop failed: more than 5 redirects"));

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let e = error(http_job(json!({"url": format!("http://{closed}/x")}), json!({}))).await;
        assert!(e.starts_with(&format!("GET http://{closed}/x failed: cannot connect: tcp connect error: ")), "{e}");
        assert!(e.ends_with("Connection refused (os error 111)"), "{e}");

        let e = error(http_job(
            json!({"url": "{{ params.u }}", "method": "{{ params.m }}"}),
            json!({"u": "http://x", "m": "FETCH"}),
        ))
        .await;
        assert!(e.starts_with("http.method: renders to \"FETCH\""), "{e}");
        let e = error(http_job(json!({"url": "{{ params.u }}"}), json!({}))).await;
        assert_eq!(e, "http.url: renders to null, not a URL");
        let e = error(http_job(json!({"url": "{{ params.u }}"}), json!({"u": "file:///etc/passwd"}))).await;
        assert!(e.contains("scheme \"file\" is not supported"), "{e}");
        let e = error(http_job(json!({"url": "http://x", "headers": {"X-A": "{{ params.v }}"}}), json!({"v": "a\nb"})))
            .await;
        assert!(e.starts_with("http.headers.X-A: "), "{e}");
        let e = error(http_job(json!({"url": "http://x", "verb": "GET"}), json!({}))).await;
        assert!(e.starts_with("http.verb: unknown field"), "{e}");
    }
}
