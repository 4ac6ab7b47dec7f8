//! `attune bench --mode stream`: `--sockets` WebSocket clients subscribed to executions
//! while the noop pipeline runs; each message's latency is its receipt time minus its
//! `timestamp` (when the change-log row was written, just before its commit), over every
//! message of every socket. Every socket must receive every change.

use std::time::Duration;

use anyhow::{bail, Context as _};
use attune_cli::stream::subscribe;
use futures::StreamExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The one field of a message the bench reads. The rest (the full row) is skipped
/// without being built: the clients run on the server's cores, and building every
/// message's JSON tree for 50,000 messages/s was the bench's own largest cost.
#[derive(serde::Deserialize)]
struct Stamped<'a> {
    #[serde(borrow)]
    timestamp: Option<&'a str>,
}

/// How long a socket's subscription may take to be acknowledged.
const ACK_LIMIT: Duration = Duration::from_secs(10);

/// What one socket saw: the latency of each message in ms.
pub type Latencies = Vec<f64>;

/// Connected, subscribed sockets, each counting until it has `expected` messages.
pub struct Listeners {
    tasks: JoinSet<anyhow::Result<Latencies>>,
}

impl Listeners {
    /// Opens `n` sockets to `base`'s `/ws` with `token`, subscribed to executions; each
    /// stops after `expected` messages (or `limit`).
    pub async fn connect(base: &str, token: &str, n: usize, expected: usize, limit: Duration) -> anyhow::Result<Self> {
        let url = format!("{}/ws", base.replacen("http", "ws", 1));
        let mut tasks = JoinSet::new();
        for _ in 0..n {
            let mut request = url.as_str().into_client_request()?;
            request.headers_mut().insert("Authorization", format!("Bearer {token}").parse()?);
            // A small read buffer: tungstenite zeroes it before every read (the default,
            // 128 KiB, made that a fifth of the clients' CPU, on the server's cores).
            let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
            let (mut socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
                .await
                .with_context(|| format!("cannot open {url}"))?;
            // Live from the acknowledgement on: a notifier that had no socket finds the
            // log's end again first, and changes written before that are not this
            // socket's live ones (docs/streaming.md). The pipeline starts after every ack.
            tokio::time::timeout(ACK_LIMIT, subscribe(&mut socket, &["execution"], None))
                .await
                .map_err(|_| anyhow::anyhow!("subscribing on {url}: no acknowledgement within {ACK_LIMIT:?}"))?
                .map_err(|e| anyhow::anyhow!("subscribing on {url}: {e}"))?;
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(expected);
                let deadline = tokio::time::Instant::now() + limit;
                while latencies.len() < expected {
                    let message = match tokio::time::timeout_at(deadline, socket.next()).await {
                        Ok(Some(Ok(m))) => m,
                        Ok(Some(Err(e))) => bail!("socket failed after {} messages: {e}", latencies.len()),
                        Ok(None) => bail!("socket closed after {} messages", latencies.len()),
                        Err(_) => bail!("only {} of {expected} messages within {limit:?}", latencies.len()),
                    };
                    let Message::Text(text) = message else { continue };
                    let received = chrono::Utc::now();
                    let Stamped { timestamp: Some(stamp) } = serde_json::from_str(&text)? else { continue };
                    let written = chrono::DateTime::parse_from_rfc3339(stamp)?;
                    latencies.push(
                        (received - written.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0) as f64
                            / 1000.0,
                    );
                }
                Ok(latencies)
            });
        }
        Ok(Listeners { tasks })
    }

    /// Waits for every socket; all their latencies, sorted.
    pub async fn finish(mut self) -> anyhow::Result<(usize, Latencies)> {
        let (mut sockets, mut all) = (0, Vec::new());
        while let Some(done) = self.tasks.join_next().await {
            all.extend(done??);
            sockets += 1;
        }
        all.sort_by(f64::total_cmp);
        Ok((sockets, all))
    }
}
