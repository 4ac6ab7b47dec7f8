//! A real WebSocket client for `/ws` (tokio-tungstenite), as a browser or a script would
//! use it: header or first-message authentication, subscriptions, changes, close codes.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::TestApp;

/// How long a test waits for any one message before failing.
const WAIT: Duration = Duration::from_secs(30);

/// What the server sent next.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    Json(Value),
    /// The server closed the socket (code and reason), or dropped it (None).
    Closed(Option<(u16, String)>),
}

/// One client connection to an app's `/ws`.
pub struct Socket {
    ws: WebSocketStream<TcpStream>,
}

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct Connect<'a> {
    /// Sent as `Authorization: Bearer`.
    pub bearer: Option<&'a str>,
    /// Appended to `/ws` (e.g. `?token=...`).
    pub query: &'a str,
    /// The client's TCP receive buffer: small, the socket backs up quickly once it stops reading.
    pub receive_buffer: Option<u32>,
}

impl Socket {
    /// Connects with `token` in the `Authorization` header (None: no header).
    pub async fn connect(app: &TestApp, token: Option<&str>) -> Socket {
        Socket::connect_with(app, Connect { bearer: token, ..Connect::default() }).await
    }

    pub async fn connect_with(app: &TestApp, how: Connect<'_>) -> Socket {
        Socket::connect_at(app.url.trim_start_matches("http://"), how).await
    }

    /// Connects to `/ws` at `addr` (`127.0.0.1:PORT`: an `attune` process of the test).
    pub async fn connect_at(addr: &str, how: Connect<'_>) -> Socket {
        let url = format!("ws://{addr}/ws{}", how.query);
        let mut request = url.as_str().into_client_request().expect("a WebSocket URL");
        if let Some(token) = how.bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value");
            request.headers_mut().insert("authorization", value);
        }
        let addr = addr.parse().expect("an IP address and port");
        let tcp = TcpSocket::new_v4().unwrap();
        if let Some(size) = how.receive_buffer {
            tcp.set_recv_buffer_size(size).unwrap();
        }
        let stream = tcp.connect(addr).await.expect("the app accepts connections");
        let (ws, response) = tokio_tungstenite::client_async(request, stream).await.expect("the WebSocket upgrade");
        assert_eq!(response.status().as_u16(), 101);
        Socket { ws }
    }

    pub async fn send(&mut self, message: Value) {
        self.ws.send(Message::text(message.to_string())).await.expect("the socket takes a message");
    }

    /// Sends `{"type":"auth","token":...}`.
    pub async fn auth(&mut self, token: &str) {
        self.send(serde_json::json!({"type": "auth", "token": token})).await;
    }

    /// Sends `subscription` and returns the server's acknowledgement (`"type":"subscribed"`).
    pub async fn subscribe(&mut self, subscription: Value) -> Value {
        self.send(subscription).await;
        let ack = self.next_json().await;
        assert_eq!(ack["type"], "subscribed", "{ack}");
        ack
    }

    /// The next message (pings and pongs are skipped), failing the test after 30 s.
    pub async fn next(&mut self) -> Received {
        self.next_within(WAIT).await.unwrap_or_else(|| panic!("no WebSocket message within {WAIT:?}"))
    }

    /// The next message, or None if nothing came within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Received> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next()).await.ok()?;
            return Some(match frame {
                Some(Ok(Message::Text(text))) => Received::Json(serde_json::from_str(&text).expect("JSON messages")),
                Some(Ok(Message::Close(frame))) => {
                    Received::Closed(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => panic!("the server sent a binary message"),
                Some(Err(_)) | None => Received::Closed(None),
            });
        }
    }

    /// The next message, which must be JSON (not a close).
    pub async fn next_json(&mut self) -> Value {
        match self.next().await {
            Received::Json(v) => v,
            Received::Closed(c) => panic!("the socket was closed: {c:?}"),
        }
    }

    /// The next change (a message without `type`).
    pub async fn change(&mut self) -> Value {
        let message = self.next_json().await;
        assert!(message.get("type").is_none(), "a change, not a control message: {message}");
        message
    }

    /// Reads (and drops) messages until the server closes; returns the close code and reason.
    pub async fn closed(&mut self) -> (u16, String) {
        loop {
            match self.next().await {
                Received::Json(_) => continue,
                Received::Closed(Some(close)) => return close,
                Received::Closed(None) => panic!("the socket was dropped without a close frame"),
            }
        }
    }
}
