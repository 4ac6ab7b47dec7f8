//! One WebSocket connection, from upgrade to close: authentication (header, or a first
//! message within 5 s; never the query string), subscriptions (register with the hub,
//! replay `since` from the table, then the live queue), client messages, keep-alive,
//! token expiry, and the close with its code.

use std::future::pending;
use std::pin::Pin;
use std::time::Duration;

use attune_core::change_log;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::response::Response;
use futures::SinkExt;
use tokio::sync::oneshot;
use tokio::time::{sleep, Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Caller, Refusal};
use crate::hub::{Eviction, Hub, Live, Registration};
use crate::protocol::{self, close, BadMessage, ClientMessage, Subscription, AUTH_TIMEOUT};

/// Client messages are small JSON objects; anything bigger is refused by the protocol layer.
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Each socket's read buffer. tungstenite's default (128 KiB) is allocated per socket and
/// zeroed before every read attempt — and a streaming socket's read is polled at every
/// live message: a quarter of the notifier's CPU at 100 sockets × 500 changes/s went to
/// that zeroing. Client messages are small; a bigger one is read in several chunks.
const READ_BUFFER: usize = 4 * 1024;
/// Live messages written per flush at most (see `Connection::send_live`).
const LIVE_BATCH: usize = 64;
/// Changes read per replay query.
const REPLAY_PAGE: i64 = 500;
/// A WebSocket ping this often keeps proxies from dropping an idle connection and finds
/// dead peers (their writes fail).
const KEEPALIVE: Duration = Duration::from_secs(30);
/// How long the close handshake may take (a peer that does not read gets dropped).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Query parameters that look like a token: refused, since URLs end up in logs.
const TOKEN_PARAMETERS: &[&str] = &["token", "access_token", "jwt", "auth", "authorization"];

/// `GET /ws`: upgrades, then serves the connection.
pub async fn upgrade(
    State(hub): State<Hub>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    let header = bearer(&headers);
    let token_in_url = query.as_deref().is_some_and(names_a_token);
    ws.max_message_size(MAX_CLIENT_MESSAGE).max_frame_size(MAX_CLIENT_MESSAGE).read_buffer_size(READ_BUFFER).on_upgrade(
        move |socket| {
            let connections = hub.connections().clone();
            connections.track_future(Connection::new(socket, hub).serve(header, token_in_url))
        },
    )
}

/// The `Authorization: Bearer` token, if the header is there; Err when it is malformed.
fn bearer(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get(AUTHORIZATION) else { return Ok(None) };
    let value = value.to_str().map_err(|_| "Authorization header is not valid text".to_string())?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Some(t.to_string()))
        .ok_or_else(|| "Authorization header must be 'Bearer <access_token>'".to_string())
}

fn names_a_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        TOKEN_PARAMETERS.iter().any(|t| name.eq_ignore_ascii_case(t))
    })
}

/// How a connection ends.
#[derive(Debug)]
enum End {
    /// The server closes it with this code and reason.
    Close(u16, String),
    /// The peer closed it or vanished.
    Gone,
}

impl End {
    fn close(code: u16, reason: impl Into<String>) -> End {
        End::Close(code, reason.into())
    }

    /// The hub is stopping (or dropped the socket's queue).
    fn going_away() -> End {
        End::close(close::GOING_AWAY, "the server is stopping; reconnect with since")
    }

    fn refused(refusal: Refusal) -> End {
        End::Close(refusal.code(), refusal.to_string())
    }
}

impl From<Eviction> for End {
    fn from(e: Eviction) -> End {
        End::Close(e.code, e.reason)
    }
}

/// What ends a connection while it streams, however busy it is: the hub closing, the
/// token expiring, the hub evicting the socket. Sends race these, so a peer that stopped
/// reading cannot hold its connection open.
struct Guards {
    closing: CancellationToken,
    expiry: Pin<Box<Sleep>>,
    /// The current subscription's registration (none before the first subscribe).
    live: Option<Registration>,
    /// The subscription's `since`: live changes at or below it are not sent. (Another
    /// notifier process's hub may be a few ids behind the one the client last used.)
    since: Option<i64>,
}

impl Guards {
    fn set_expiry(&mut self, caller: &Caller) {
        self.expiry.as_mut().reset(Instant::now() + caller.time_left());
    }

    /// Resolves when the connection must end.
    async fn stopped(&mut self) -> End {
        let evicted = self.live.as_mut().map(|r| &mut r.evicted);
        stopped(&self.closing, &mut self.expiry, evicted).await
    }

    /// A live message already queued, if any (no waiting).
    fn queued(&mut self) -> Option<Live> {
        self.live.as_mut()?.queue.try_recv().ok()
    }

    /// True when the live message `id` was covered by the subscription's replay.
    fn replayed(&self, id: i64) -> bool {
        self.since.is_some_and(|since| id <= since)
    }

    /// The next live message, or the end of the connection.
    async fn next(&mut self) -> Result<Live, End> {
        let Some(live) = self.live.as_mut() else {
            return Err(stopped(&self.closing, &mut self.expiry, None).await);
        };
        tokio::select! {
            biased;
            end = stopped(&self.closing, &mut self.expiry, Some(&mut live.evicted)) => Err(end),
            message = live.queue.recv() => message.ok_or_else(End::going_away),
        }
    }
}

async fn stopped(
    closing: &CancellationToken,
    expiry: &mut Pin<Box<Sleep>>,
    evicted: Option<&mut oneshot::Receiver<Eviction>>,
) -> End {
    let evicted = async {
        match evicted {
            Some(evicted) => match evicted.await {
                Ok(eviction) => eviction.into(),
                Err(_) => End::going_away(),
            },
            None => pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = closing.cancelled() => End::going_away(),
        _ = expiry.as_mut() => End::close(close::UNAUTHORIZED, "access token expired: reconnect with a fresh token"),
        end = evicted => end,
    }
}

/// What woke the streaming loop.
enum Wake {
    Client(Option<Result<Message, axum::Error>>),
    Live(Live),
    KeepAlive,
}

struct Connection {
    ws: WebSocket,
    hub: Hub,
}

impl Connection {
    fn new(ws: WebSocket, hub: Hub) -> Connection {
        Connection { ws, hub }
    }

    async fn serve(mut self, header: Result<Option<String>, String>, token_in_url: bool) {
        match self.run(header, token_in_url).await {
            End::Close(code, reason) => {
                tracing::debug!(code, reason = %reason, "closing a WebSocket");
                self.close(code, &reason).await;
            }
            End::Gone => {
                // Completes the close handshake the peer started (best effort).
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.ws.close()).await;
            }
        }
    }

    async fn run(&mut self, header: Result<Option<String>, String>, token_in_url: bool) -> End {
        if token_in_url {
            return End::close(
                close::UNAUTHORIZED,
                "tokens in the URL are refused (URLs end up in logs): use the Authorization header or an auth message",
            );
        }
        let caller = match header {
            Err(why) => return End::close(close::UNAUTHORIZED, why),
            Ok(Some(token)) => auth::authenticate(self.hub.context(), &token).await.map_err(End::refused),
            Ok(None) => self.await_auth().await,
        };
        match caller {
            Ok(caller) => self.stream(caller).await,
            Err(end) => end,
        }
    }

    /// The first message must authenticate, within [`AUTH_TIMEOUT`].
    async fn await_auth(&mut self) -> Result<Caller, End> {
        const FIRST: &str = r#"authenticate first: send {"type":"auth","token":"<access_token>"} within 5 s"#;
        let deadline = Instant::now() + AUTH_TIMEOUT;
        loop {
            let received = tokio::select! {
                received = self.ws.recv() => received,
                _ = tokio::time::sleep_until(deadline) => return Err(End::close(close::UNAUTHORIZED, FIRST)),
                _ = self.hub.closing().cancelled() => return Err(End::going_away()),
            };
            let text = match received {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Err(End::Gone),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Binary(_))) => return Err(End::close(close::UNAUTHORIZED, FIRST)),
                Some(Ok(Message::Text(text))) => text,
            };
            return match protocol::parse(&text) {
                Ok(ClientMessage::Auth { token }) => {
                    auth::authenticate(self.hub.context(), &token).await.map_err(End::refused)
                }
                Err(bad @ BadMessage::Auth(_)) => Err(End::close(close::UNAUTHORIZED, bad.to_string())),
                _ => Err(End::close(close::UNAUTHORIZED, FIRST)),
            };
        }
    }

    /// The authenticated connection: client messages, live changes and keep-alive pings,
    /// until something ends it.
    async fn stream(&mut self, mut caller: Caller) -> End {
        let mut guards = Guards {
            closing: self.hub.closing().clone(),
            expiry: Box::pin(sleep(Duration::ZERO)),
            live: None,
            since: None,
        };
        guards.set_expiry(&caller);
        let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            // Unbiased: a busy live queue must not starve the client's messages.
            let wake = tokio::select! {
                next = guards.next() => match next {
                    Ok(live) => Wake::Live(live),
                    Err(end) => return end,
                },
                received = self.ws.recv() => Wake::Client(received),
                _ = keepalive.tick() => Wake::KeepAlive,
            };
            let step = match wake {
                Wake::Live(live) => self.send_live(live, &mut guards).await,
                Wake::KeepAlive => self.send(Message::Ping(Default::default()), &mut guards).await,
                Wake::Client(received) => self.on_client(received, &mut caller, &mut guards).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_client(
        &mut self,
        received: Option<Result<Message, axum::Error>>,
        caller: &mut Caller,
        guards: &mut Guards,
    ) -> Result<(), End> {
        let text = match received {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Err(End::Gone),
            // Pings are answered by the WebSocket layer itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Ok(()),
            Some(Ok(Message::Binary(_))) => return self.send_error(&BadMessage::Binary, guards).await,
            Some(Ok(Message::Text(text))) => text,
        };
        match protocol::parse(&text) {
            Ok(ClientMessage::Subscribe(subscription)) => self.subscribe(caller, subscription, guards).await,
            Ok(ClientMessage::Ping) => self.send_json(&protocol::pong(), guards).await,
            Ok(ClientMessage::Auth { token }) => self.reauthenticate(caller, &token, guards).await,
            Err(bad @ BadMessage::Subscribe(_)) => {
                self.send_error(&bad, guards).await?;
                Err(End::close(close::BAD_REQUEST, bad.to_string()))
            }
            Err(bad) => self.send_error(&bad, guards).await,
        }
    }

    /// A later auth message with a fresh token of the same caller extends the socket's life.
    async fn reauthenticate(&mut self, caller: &mut Caller, token: &str, guards: &mut Guards) -> Result<(), End> {
        let fresh = match auth::authenticate(self.hub.context(), token).await {
            Ok(fresh) => fresh,
            Err(refusal) => return self.send_error(&BadMessage::Auth(refusal.to_string()), guards).await,
        };
        let same = (fresh.tenant_id, fresh.identity_id, fresh.execution_id)
            == (caller.tenant_id, caller.identity_id, caller.execution_id);
        if !same {
            let why = format!("the token is not {}'s: a socket keeps the caller it authenticated as", caller.login);
            return self.send_error(&BadMessage::Auth(why), guards).await;
        }
        *caller = fresh;
        guards.set_expiry(caller);
        Ok(())
    }

    /// Replaces the socket's subscription: registers for live changes, acknowledges,
    /// replays `since` up to where the live queue starts, then lets the queue flow.
    async fn subscribe(&mut self, caller: &Caller, subscription: Subscription, guards: &mut Guards) -> Result<(), End> {
        // The old queue stops filling before the new replay starts.
        guards.live = None;
        guards.since = subscription.since;
        let registration = match self.hub.register(caller, subscription.clone()).await {
            Ok(registration) => registration,
            Err(not_ready) => return Err(End::close(close::TRY_AGAIN_LATER, not_ready.to_string())),
        };
        let live_after = registration.live_after;
        guards.live = Some(registration);
        if let Some(execution) = caller.execution_id {
            // Its end may have been fanned out before the registration: check the table.
            auth::execution_token_in_force(&self.hub.context().pool, execution, caller.tenant_id)
                .await
                .map_err(End::refused)?;
        }
        self.send_json(&subscription.acknowledgement(live_after), guards).await?;
        if let Some(since) = subscription.since {
            self.replay(caller, &subscription, since, live_after, guards).await?;
        }
        Ok(())
    }

    /// Sends the tenant's retained changes with ids in `(since, until]` that match.
    async fn replay(
        &mut self,
        caller: &Caller,
        subscription: &Subscription,
        mut since: i64,
        until: i64,
        guards: &mut Guards,
    ) -> Result<(), End> {
        let types = subscription.entity_types.names();
        let pool = self.hub.context().pool.clone();
        while since < until {
            let read = change_log::replay(&pool, caller.tenant_id, &types, since, until, REPLAY_PAGE);
            let page = tokio::select! {
                biased;
                end = guards.stopped() => return Err(end),
                page = read => page.map_err(|e| {
                    tracing::warn!(error = %e, "notifier: replay failed");
                    End::close(close::INTERNAL_ERROR, format!("cannot replay the change log now; reconnect with since={since}"))
                })?,
            };
            for change in &page {
                if subscription.matches(&change.entity_type, change.entity_id) {
                    self.send(Message::Text(change.message().into()), guards).await?;
                }
                since = change.id;
            }
            if (page.len() as i64) < REPLAY_PAGE {
                break;
            }
        }
        Ok(())
    }

    async fn send_error(&mut self, bad: &BadMessage, guards: &mut Guards) -> Result<(), End> {
        self.send_json(&protocol::error_message(bad), guards).await
    }

    async fn send_json(&mut self, value: &serde_json::Value, guards: &mut Guards) -> Result<(), End> {
        self.send(Message::Text(value.to_string().into()), guards).await
    }

    /// Sends `first` and the live messages queued behind it (at most [`LIVE_BATCH`]) as
    /// frames of one write: under load a socket's messages arrive in bursts, and a burst
    /// then costs one system call and one wake-up of the peer instead of one per message.
    async fn send_live(&mut self, first: Live, guards: &mut Guards) -> Result<(), End> {
        let mut next = Some(first);
        let mut fed = 0;
        while let Some(live) = next.take() {
            if !guards.replayed(live.id) {
                self.feed(Message::Text(live.text), guards).await?;
                fed += 1;
            }
            if fed < LIVE_BATCH {
                next = guards.queued();
            }
        }
        if fed == 0 {
            return Ok(());
        }
        tokio::select! {
            biased;
            end = guards.stopped() => Err(end),
            flushed = self.ws.flush() => flushed.map_err(|_| End::Gone),
        }
    }

    /// Queues `message` in the connection's write buffer (written by the next flush, or
    /// when the buffer is full), unless the connection must end first.
    async fn feed(&mut self, message: Message, guards: &mut Guards) -> Result<(), End> {
        tokio::select! {
            biased;
            end = guards.stopped() => Err(end),
            fed = self.ws.feed(message) => fed.map_err(|_| End::Gone),
        }
    }

    /// Sends `message`, unless the connection must end first (see [`Guards`]).
    async fn send(&mut self, message: Message, guards: &mut Guards) -> Result<(), End> {
        tokio::select! {
            biased;
            end = guards.stopped() => Err(end),
            sent = self.ws.send(message) => sent.map_err(|_| End::Gone),
        }
    }

    /// Sends the close frame and waits (bounded) for the peer's answer.
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code, reason: protocol::close_reason(reason).into() };
        let handshake = async {
            if self.ws.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            // Whatever the peer still sends is dropped; the stream ends with its close.
            while let Some(Ok(_)) = self.ws.recv().await {}
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, handshake).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_in_the_url_are_recognised() {
        assert!(names_a_token("token=abc"));
        assert!(names_a_token("a=1&access_token=abc"));
        assert!(names_a_token("Token"));
        assert!(!names_a_token("since=5&tokens_seen=2"));
        assert!(!names_a_token(""));
    }

    #[test]
    fn bearer_header_forms() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), Ok(None));
        headers.insert(AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Ok(Some("abc".into())));
        headers.insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(bearer(&headers).unwrap_err().contains("Bearer <access_token>"));
    }
}
