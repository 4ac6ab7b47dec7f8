//! The WebSocket stream (`GET /ws`, docs/streaming.md) as the CLI uses it: the token in the
//! `Authorization` header (never in the URL), one subscription, then the changes.
//!
//! Opening fails — and the caller polls the REST API instead — when the server serves no
//! `/ws` (an API process without the notifier answers 404), the stream is not running yet
//! (close 1013), or the URL is `https://` (this client speaks plain `ws://` only).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long connecting and subscribing may take before the caller polls instead.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// An open WebSocket to `/ws`.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Stream {
    ws: Socket,
}

/// What the server sent next.
#[derive(Debug)]
pub enum Next {
    /// A change: `{"id", "event", "entity_type", "entity_id", "data", "timestamp"}`.
    Change(Value),
    /// The socket is closed (code and reason), or was dropped (None).
    Closed(Option<(u16, String)>),
}

impl Stream {
    /// Connects to `base`'s `/ws` with `token` and subscribes to `entity_types` (after
    /// change `since`, when given). Err says why the stream cannot be used.
    pub async fn open(base: &str, token: &str, entity_types: &[&str], since: Option<i64>) -> Result<Stream, String> {
        tokio::time::timeout(OPEN_TIMEOUT, Self::open_now(base, token, entity_types, since))
            .await
            .unwrap_or_else(|_| Err(format!("no answer from the stream within {OPEN_TIMEOUT:?}")))
    }

    async fn open_now(base: &str, token: &str, entity_types: &[&str], since: Option<i64>) -> Result<Stream, String> {
        let url = match base.strip_prefix("http://") {
            Some(rest) => format!("ws://{rest}/ws"),
            None => return Err("this client opens only ws:// streams (the server URL is https://)".into()),
        };
        let mut request = url.as_str().into_client_request().map_err(|e| format!("{url}: {e}"))?;
        let bearer =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| "the token is not valid text".to_string())?;
        request.headers_mut().insert("authorization", bearer);
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.map_err(|e| match e {
            WsError::Http(res) => format!("{url} answered HTTP {} (no stream served there)", res.status().as_u16()),
            other => format!("{url}: {other}"),
        })?;
        subscribe(&mut ws, entity_types, since).await?;
        Ok(Stream { ws })
    }

    /// The next change (control messages such as pongs are skipped).
    pub async fn next(&mut self) -> Next {
        loop {
            match read(&mut self.ws).await {
                Some(Ok(v)) if v.get("type").is_some() => continue,
                Some(Ok(v)) => return Next::Change(v),
                Some(Err(close)) => return Next::Closed(close),
                None => return Next::Closed(None),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Subscribes `ws` to `entity_types` (after change `since`, when given) and waits for the
/// server's acknowledgement, which comes first: changes are live for the socket from there
/// on. Err says why the stream is not usable (refused, or closed).
pub async fn subscribe(ws: &mut Socket, entity_types: &[&str], since: Option<i64>) -> Result<(), String> {
    let mut subscribe = json!({"type": "subscribe", "entity_types": entity_types});
    if let Some(since) = since {
        subscribe["since"] = json!(since);
    }
    ws.send(Message::text(subscribe.to_string())).await.map_err(|e| format!("cannot send the subscription: {e}"))?;
    loop {
        match read(ws).await {
            Some(Ok(v)) if v["type"] == "subscribed" => return Ok(()),
            Some(Ok(v)) if v["type"] == "error" => {
                return Err(format!("the stream refused the subscription: {}", v["error"]["message"]))
            }
            Some(Ok(_)) => continue,
            Some(Err(Some((code, reason)))) => return Err(format!("the stream closed at once ({code}: {reason})")),
            Some(Err(None)) | None => return Err("the stream closed at once".into()),
        }
    }
}

/// The next JSON message on `ws`; Err(close) when the socket ended.
async fn read(ws: &mut Socket) -> Option<Result<Value, Option<(u16, String)>>> {
    loop {
        return Some(match ws.next().await? {
            Ok(Message::Text(text)) => match serde_json::from_str(&text) {
                Ok(v) => Ok(v),
                Err(_) => continue,
            },
            Ok(Message::Close(frame)) => Err(frame.map(|f| (u16::from(f.code), f.reason.to_string()))),
            Ok(_) => continue,
            Err(_) => Err(None),
        });
    }
}
