//! Connecting to RabbitMQ: named connections, capped exponential backoff between attempts,
//! and URLs safe to log.

use std::time::Duration;

use attune_core::{Context, Shutdown};
use lapin::types::ShortString;
use lapin::{Connection, ConnectionProperties};

/// Which half of the bridge a connection serves (part of its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Outbound,
    Inbound,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Outbound => "outbound",
            Role::Inbound => "inbound",
        }
    }
}

/// The name a bridge connection shows in RabbitMQ (`rabbitmqctl list_connections
/// client_properties`, the management UI): `attune-bridge/<database>/<role>/<pid>`, so an
/// operator sees which deployment and which process it belongs to.
pub fn connection_name(ctx: &Context, role: Role) -> String {
    let options = ctx.pool.connect_options();
    let database = options.get_database().unwrap_or("-");
    format!("attune-bridge/{database}/{}/{}", role.as_str(), std::process::id())
}

/// How long one connection attempt may take (a black-holed host never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a clean close may take (a broken connection answers nothing).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a connection to `url` named `name`; the error says why not.
pub async fn connect(url: &str, name: &str) -> Result<Connection, String> {
    let properties = ConnectionProperties::default()
        .with_connection_name(name.into())
        .with_client_property("product".into(), "attune".into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(format!("cannot connect: {e}")),
        Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// `text` as an AMQP short string (exchange, queue and routing-key names): at most 255
/// bytes, else an error naming it.
pub fn short(what: &str, text: &str) -> Result<ShortString, String> {
    ShortString::try_new(text).map_err(|e| format!("{what} {:?}: {e}", attune_core::quoting::excerpt(text, 60)))
}

/// `url` without its password, for logs.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "<not a URL>".into() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

/// Capped exponential backoff: 100 ms, 200 ms, … up to 5 s between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    /// A RabbitMQ restart takes seconds; waiting longer between tries only adds lag.
    const CAP: Duration = Duration::from_secs(5);

    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The delay before the next attempt; each call doubles the following one, up to the cap.
    pub fn delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(Self::CAP);
        now
    }

    /// After a success: the next failure waits the shortest delay again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }

    /// Sleeps the next delay; false when `shutdown` came first.
    pub async fn sleep(&mut self, shutdown: &Shutdown) -> bool {
        let delay = self.delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = shutdown.cancelled() => false,
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u128> = (0..9).map(|_| b.delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.delay(), Duration::from_millis(100));
    }

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(redacted("amqp://guest:secret@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(redacted("amqps://host:5671"), "amqps://host:5671");
        assert_eq!(redacted("amqp://u:p@ss@h/v"), "amqp://u:***@h/v");
        assert_eq!(redacted("nonsense"), "<not a URL>");
    }

    #[test]
    fn long_names_are_refused_not_panicked_on() {
        assert!(short("queue", &"q".repeat(255)).is_ok());
        let err = short("queue", &"q".repeat(256)).unwrap_err();
        assert!(err.contains("queue") && err.contains("255"), "{err}");
    }
}
