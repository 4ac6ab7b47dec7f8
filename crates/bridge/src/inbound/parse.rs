//! What an inbound message must carry to become an event: header `trigger` (a trigger
//! ref), header `tenant_id` (a positive integer, or its decimal text) and a JSON body.
//! Anything else is refused here with the reason that goes to the dead-letter queue.

use attune_core::quoting::excerpt;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::Value;

/// How much of a bad input a reason quotes.
const QUOTE: usize = 100;

/// A message that may become an event (its trigger is looked up next).
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    pub tenant_id: i64,
    pub trigger_ref: String,
    pub payload: Value,
}

/// Reads `headers` and `body`; the error is the reason for the dead-letter queue.
pub fn inbound(headers: Option<&FieldTable>, body: &[u8], max_body_bytes: usize) -> Result<Inbound, String> {
    let header = |name: &str| headers.and_then(|h| h.inner().get(name)).filter(|v| !matches!(v, AMQPValue::Void));
    let trigger_ref = match header("trigger") {
        None => return Err("missing header `trigger` (the ref of a webhook or custom trigger)".into()),
        Some(value) => text(value).ok_or_else(|| "header `trigger` must be a string (a trigger ref)".to_string())?,
    };
    if trigger_ref.trim().is_empty() {
        return Err("header `trigger` is empty".into());
    }
    let tenant_id = match header("tenant_id") {
        None => return Err("missing header `tenant_id`".into()),
        Some(value) => tenant(value)?,
    };
    if body.len() > max_body_bytes {
        return Err(format!("the body is {} bytes, more than the limit of {max_body_bytes}", body.len()));
    }
    let payload = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    Ok(Inbound { tenant_id, trigger_ref, payload })
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok().map(str::to_string),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// A tenant id: an AMQP integer of any width, or its decimal text.
fn tenant(value: &AMQPValue) -> Result<i64, String> {
    let id = match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        other => text(other).and_then(|s| s.trim().parse::<i64>().ok()),
    };
    match id {
        Some(id) if id > 0 => Ok(id),
        _ => {
            let shown = text(value).unwrap_or_else(|| format!("{value:?}"));
            Err(format!("header `tenant_id` must be a positive integer, not {:?}", excerpt(&shown, QUOTE)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn good() -> FieldTable {
        headers(&[("trigger", AMQPValue::LongString("p.hook".into())), ("tenant_id", AMQPValue::LongLongInt(3))])
    }

    #[test]
    fn a_good_message_becomes_an_inbound_event() {
        let got = inbound(Some(&good()), br#"{"a": 1}"#, 1024).unwrap();
        assert_eq!(got, Inbound { tenant_id: 3, trigger_ref: "p.hook".into(), payload: json!({"a": 1}) });
        let as_text = headers(&[
            ("trigger", AMQPValue::ShortString("p.hook".into())),
            ("tenant_id", AMQPValue::LongString("12".into())),
        ]);
        assert_eq!(inbound(Some(&as_text), b"[1]", 1024).unwrap().tenant_id, 12);
        let narrow =
            headers(&[("trigger", AMQPValue::LongString("x.y".into())), ("tenant_id", AMQPValue::ShortInt(5))]);
        assert_eq!(inbound(Some(&narrow), b"null", 1024).unwrap().tenant_id, 5);
    }

    #[test]
    fn each_refusal_names_its_reason() {
        let err = inbound(None, b"{}", 1024).unwrap_err();
        assert!(err.contains("missing header `trigger`"), "{err}");
        let no_tenant = headers(&[("trigger", AMQPValue::LongString("p.hook".into()))]);
        assert!(inbound(Some(&no_tenant), b"{}", 1024).unwrap_err().contains("missing header `tenant_id`"));
        let bad_tenant = headers(&[
            ("trigger", AMQPValue::LongString("p.hook".into())),
            ("tenant_id", AMQPValue::LongString("abc".into())),
        ]);
        let err = inbound(Some(&bad_tenant), b"{}", 1024).unwrap_err();
        assert!(err.contains("tenant_id") && err.contains("abc"), "{err}");
        let zero =
            headers(&[("trigger", AMQPValue::LongString("p.hook".into())), ("tenant_id", AMQPValue::LongInt(0))]);
        assert!(inbound(Some(&zero), b"{}", 1024).unwrap_err().contains("positive integer"));
        let number_trigger = headers(&[("trigger", AMQPValue::LongInt(1)), ("tenant_id", AMQPValue::LongInt(1))]);
        assert!(inbound(Some(&number_trigger), b"{}", 1024).unwrap_err().contains("must be a string"));
        let err = inbound(Some(&good()), b"not json", 1024).unwrap_err();
        assert!(err.starts_with("the body is not JSON"), "{err}");
        let err = inbound(Some(&good()), &[b' '; 2000], 1024).unwrap_err();
        assert!(err.contains("2000 bytes") && err.contains("1024"), "{err}");
    }
}
