//! The wire protocol of `/ws` (docs/streaming.md): what a client may send, parsed into
//! [`ClientMessage`]; the control messages the server sends beside the changes (each with
//! a `type`; a change has none); and the close codes.
//!
//! Parsing is strict and every refusal says what was wrong with which input, since a
//! subscription that silently matched nothing would look like a quiet system.

use attune_core::quoting::excerpt;
use serde_json::{json, Value};

/// Close codes. 4000–4999 are the application's; each mirrors the HTTP status it means.
pub mod close {
    /// The server is shutting down: reconnect (with `since`).
    pub const GOING_AWAY: u16 = 1001;
    /// The server could not read the change log (replay): reconnect with `since`.
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The stream is not ready yet (its reader has not started): reconnect shortly.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The socket fell too far behind (its queue filled): reconnect with `since`.
    pub const TOO_SLOW: u16 = 4008;
    /// A subscription that cannot be served (unknown entity type, bad field).
    pub const BAD_REQUEST: u16 = 4400;
    /// Not authenticated in time, a bad token, or the token expired.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The token's role may not read.
    pub const FORBIDDEN: u16 = 4403;
}

/// How long a socket without an `Authorization` header has to send its auth message.
pub const AUTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A close reason may hold at most 123 bytes (RFC 6455 §5.5: 125 with the code).
const MAX_REASON_BYTES: usize = 123;

/// The kinds of entity the change log reports on (API.md "WebSocket stream").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityType {
    Execution,
    Inquiry,
    Event,
    Enforcement,
    Rule,
}

impl EntityType {
    pub const ALL: [EntityType; 5] =
        [EntityType::Execution, EntityType::Inquiry, EntityType::Event, EntityType::Enforcement, EntityType::Rule];

    pub fn name(self) -> &'static str {
        match self {
            EntityType::Execution => "execution",
            EntityType::Inquiry => "inquiry",
            EntityType::Event => "event",
            EntityType::Enforcement => "enforcement",
            EntityType::Rule => "rule",
        }
    }

    pub fn parse(name: &str) -> Option<EntityType> {
        EntityType::ALL.into_iter().find(|t| t.name() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of entity types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntityTypes(u8);

impl EntityTypes {
    pub fn all() -> EntityTypes {
        EntityTypes(EntityType::ALL.iter().fold(0, |bits, t| bits | t.bit()))
    }

    pub fn contains(self, entity_type: EntityType) -> bool {
        self.0 & entity_type.bit() != 0
    }

    /// The names in the set, in [`EntityType::ALL`]'s order (what replay queries take).
    pub fn names(self) -> Vec<String> {
        EntityType::ALL.into_iter().filter(|t| self.contains(*t)).map(|t| t.name().to_string()).collect()
    }

    /// Parses the names a client sent: every one must be known, and at least one given.
    pub fn parse(names: &[String]) -> Result<EntityTypes, String> {
        if names.is_empty() {
            return Err(format!("entity_types is empty: name at least one of {}", known_types()));
        }
        let mut bits = 0;
        for name in names {
            let t = EntityType::parse(name)
                .ok_or_else(|| format!("unknown entity type \"{}\": expected {}", excerpt(name, 40), known_types()))?;
            bits |= t.bit();
        }
        Ok(EntityTypes(bits))
    }
}

fn known_types() -> String {
    EntityType::ALL.map(EntityType::name).join(", ")
}

/// What a socket asked to receive.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub entity_types: EntityTypes,
    /// Only this entity's changes (of the subscribed types).
    pub entity_id: Option<i64>,
    /// Replay the retained changes after this change-log id first.
    pub since: Option<i64>,
}

impl Subscription {
    /// Whether a change of `entity_type` (as stored) and `entity_id` is for this subscription.
    pub fn matches(&self, entity_type: &str, entity_id: i64) -> bool {
        EntityType::parse(entity_type).is_some_and(|t| self.entity_types.contains(t))
            && self.entity_id.is_none_or(|id| id == entity_id)
    }

    /// The acknowledgement, sent once the socket receives live changes after `live_after`
    /// (the replay, if `since` was given, covers the ids up to it).
    pub fn acknowledgement(&self, live_after: i64) -> Value {
        json!({
            "type": "subscribed",
            "entity_types": self.entity_types.names(),
            "entity_id": self.entity_id,
            "since": self.since,
            "live_after": live_after,
        })
    }
}

/// A message from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    Auth { token: String },
    Subscribe(Subscription),
    Ping,
}

/// A client message that cannot be served; [`BadMessage::code`] names the kind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadMessage {
    #[error("message is not a JSON object: {0}")]
    NotJson(String),
    #[error("binary messages are not understood: send JSON text")]
    Binary,
    #[error("unknown message type {0}: expected auth, subscribe or ping")]
    UnknownType(String),
    #[error("auth: {0}")]
    Auth(String),
    #[error("subscribe: {0}")]
    Subscribe(String),
}

impl BadMessage {
    /// The `code` of the error message sent back.
    pub fn code(&self) -> &'static str {
        match self {
            BadMessage::NotJson(_) | BadMessage::Binary => "bad_message",
            BadMessage::UnknownType(_) => "unknown_message_type",
            BadMessage::Auth(_) => "bad_auth",
            BadMessage::Subscribe(_) => "bad_subscription",
        }
    }
}

/// Parses one text message from the client.
pub fn parse(text: &str) -> Result<ClientMessage, BadMessage> {
    let value: Value = serde_json::from_str(text).map_err(|e| BadMessage::NotJson(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Err(BadMessage::NotJson(format!("got {}", kind_of(&value))));
    };
    let Some(kind) = fields.get("type") else {
        return Err(BadMessage::NotJson("it has no \"type\" field".into()));
    };
    match kind.as_str() {
        Some("auth") => auth(&fields).map_err(BadMessage::Auth),
        Some("subscribe") => subscription(&fields).map(ClientMessage::Subscribe).map_err(BadMessage::Subscribe),
        Some("ping") => Ok(ClientMessage::Ping),
        Some(other) => Err(BadMessage::UnknownType(format!("\"{}\"", excerpt(other, 40)))),
        None => Err(BadMessage::UnknownType(excerpt(&kind.to_string(), 40).into_owned())),
    }
}

type Fields = serde_json::Map<String, Value>;

fn auth(fields: &Fields) -> Result<ClientMessage, String> {
    only(fields, &["token"])?;
    match fields.get("token") {
        Some(Value::String(token)) => Ok(ClientMessage::Auth { token: token.clone() }),
        Some(other) => Err(format!("token must be a string (an access token), got {}", kind_of(other))),
        None => Err("missing field \"token\"".into()),
    }
}

fn subscription(fields: &Fields) -> Result<Subscription, String> {
    only(fields, &["entity_types", "entity_id", "since"])?;
    let entity_types = match fields.get("entity_types") {
        None | Some(Value::Null) => EntityTypes::all(),
        Some(Value::Array(items)) => {
            let names = items
                .iter()
                .map(|item| item.as_str().map(String::from))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| "entity_types must be a list of names, e.g. [\"execution\"]".to_string())?;
            EntityTypes::parse(&names)?
        }
        Some(other) => {
            return Err(format!("entity_types must be a list of names, e.g. [\"execution\"], got {}", kind_of(other)))
        }
    };
    let entity_id = whole_number(fields, "entity_id")?;
    let since = whole_number(fields, "since")?;
    if since.is_some_and(|since| since < 0) {
        return Err("since must be a change id (0 or more)".into());
    }
    Ok(Subscription { entity_types, entity_id, since })
}

/// Refuses fields other than `type` and `allowed` (a misspelt field would be ignored otherwise).
fn only(fields: &Fields, allowed: &[&str]) -> Result<(), String> {
    match fields.keys().find(|k| *k != "type" && !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(format!("unknown field \"{}\": expected {}", excerpt(unknown, 40), allowed.join(", "))),
        None => Ok(()),
    }
}

fn whole_number(fields: &Fields, name: &str) -> Result<Option<i64>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            value.as_i64().map(Some).ok_or_else(|| format!("{name} must be a whole number, got {}", kind_of(value)))
        }
    }
}

/// What a JSON value is, for error messages (never the value itself, which may be long).
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The error message sent back for a message that cannot be served.
pub fn error_message(error: &BadMessage) -> Value {
    json!({"type": "error", "error": {"code": error.code(), "message": error.to_string()}})
}

pub fn pong() -> Value {
    json!({"type": "pong"})
}

/// `reason` cut to what a close frame can hold, on a character boundary.
pub fn close_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_string();
    }
    let mut end = MAX_REASON_BYTES;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_parses_types_entity_and_since() {
        let m = parse(r#"{"type":"subscribe","entity_types":["execution","rule"],"entity_id":7,"since":41}"#).unwrap();
        let ClientMessage::Subscribe(s) = m else { panic!("{m:?}") };
        assert_eq!(s.entity_types.names(), ["execution", "rule"]);
        assert_eq!((s.entity_id, s.since), (Some(7), Some(41)));
        assert!(s.matches("execution", 7));
        assert!(!s.matches("execution", 8), "another entity");
        assert!(!s.matches("event", 7), "another type");
        assert!(!s.matches("something_new", 7), "a type the stream does not know");

        let ClientMessage::Subscribe(all) = parse(r#"{"type":"subscribe"}"#).unwrap() else { panic!() };
        assert_eq!(all.entity_types, EntityTypes::all(), "no entity_types: every type");
    }

    #[test]
    fn bad_subscriptions_say_what_is_wrong() {
        let err = parse(r#"{"type":"subscribe","entity_types":["execution","executions"]}"#).unwrap_err();
        assert_eq!(err.code(), "bad_subscription");
        assert!(err.to_string().contains("unknown entity type \"executions\""), "{err}");
        assert!(err.to_string().contains("execution, inquiry, event, enforcement, rule"), "{err}");

        let err = parse(r#"{"type":"subscribe","entity_types":[]}"#).unwrap_err();
        assert!(err.to_string().contains("entity_types is empty"), "{err}");
        let err = parse(r#"{"type":"subscribe","since":"5"}"#).unwrap_err();
        assert!(err.to_string().contains("since must be a whole number, got a string"), "{err}");
        let err = parse(r#"{"type":"subscribe","entity_types":"execution"}"#).unwrap_err();
        assert!(err.to_string().contains("entity_types must be a list"), "{err}");
        let err = parse(r#"{"type":"subscribe","since":-1}"#).unwrap_err();
        assert!(err.to_string().contains("since"), "{err}");
        let err = parse(r#"{"type":"subscribe","entity_type":["rule"]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field \"entity_type\""), "a misspelt field is named: {err}");
    }

    #[test]
    fn other_messages() {
        assert_eq!(parse(r#"{"type":"auth","token":"abc"}"#).unwrap(), ClientMessage::Auth { token: "abc".into() });
        assert_eq!(parse(r#"{"type":"ping"}"#).unwrap(), ClientMessage::Ping);
        let err = parse(r#"{"type":"unsubscribe"}"#).unwrap_err();
        assert_eq!(err.code(), "unknown_message_type");
        assert!(err.to_string().contains("\"unsubscribe\""), "{err}");
        assert_eq!(parse("not json").unwrap_err().code(), "bad_message");
        assert_eq!(parse(r#"{"token":"x"}"#).unwrap_err().code(), "bad_message");
        assert_eq!(parse(r#"{"type":"auth"}"#).unwrap_err().code(), "bad_auth");
        assert!(parse(r#"{"type":"auth","token":5}"#).unwrap_err().to_string().contains("token must be a string"));
        assert_eq!(parse("[1]").unwrap_err().to_string(), "message is not a JSON object: got a list");
    }

    #[test]
    fn close_reasons_fit_a_frame() {
        let long = "é".repeat(100);
        let cut = close_reason(&long);
        assert!(cut.len() <= 123 && cut.chars().all(|c| c == 'é'));
        assert_eq!(close_reason("short"), "short");
    }
}
