//! Trigger types and the parameters each one needs.

use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Stored as `text` (see [`super::status`] for why not a PostgreSQL enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(type_name = "text")]
pub enum TriggerType {
    #[sqlx(rename = "webhook")]
    Webhook,
    #[sqlx(rename = "timer.interval")]
    Interval,
    #[sqlx(rename = "timer.cron")]
    Cron,
    #[sqlx(rename = "timer.date")]
    Date,
    #[sqlx(rename = "custom")]
    Custom,
}

/// Longest interval a `timer.interval` takes: 100 years.
pub const MAX_INTERVAL_SECONDS: f64 = 100.0 * 365.25 * 86_400.0;

impl TriggerType {
    pub const ALL: [TriggerType; 5] =
        [TriggerType::Webhook, TriggerType::Interval, TriggerType::Cron, TriggerType::Date, TriggerType::Custom];

    pub fn parse(s: &str) -> Result<TriggerType, String> {
        Ok(match s {
            "webhook" => TriggerType::Webhook,
            "timer.interval" => TriggerType::Interval,
            "timer.cron" => TriggerType::Cron,
            "timer.date" => TriggerType::Date,
            "custom" => TriggerType::Custom,
            other => {
                let names: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
                return Err(format!("unknown trigger type {other:?}: expected one of {}", names.join(", ")));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerType::Webhook => "webhook",
            TriggerType::Interval => "timer.interval",
            TriggerType::Cron => "timer.cron",
            TriggerType::Date => "timer.date",
            TriggerType::Custom => "custom",
        }
    }

    pub fn is_timer(self) -> bool {
        matches!(self, TriggerType::Interval | TriggerType::Cron | TriggerType::Date)
    }

    /// Checks a trigger's `parameters` for its type; the message names the field.
    pub fn check_parameters(self, params: &serde_json::Value) -> Result<(), String> {
        let field = |name: &str| params.get(name);
        match self {
            TriggerType::Interval => match field("interval_seconds").and_then(|v| v.as_f64()) {
                Some(s) if s > 0.0 && s <= MAX_INTERVAL_SECONDS => Ok(()),
                Some(s) => Err(format!(
                    "parameters.interval_seconds must be a positive number of seconds, at most 100 years, got {s}"
                )),
                None => Err("timer.interval needs parameters.interval_seconds (a positive number)".into()),
            },
            TriggerType::Cron => {
                let Some(expr) = field("cron").and_then(|v| v.as_str()) else {
                    return Err("timer.cron needs parameters.cron (\"sec min hour dom mon dow\")".into());
                };
                if expr.split_whitespace().count() != 6 {
                    return Err(format!(
                        "parameters.cron {expr:?} must have six fields: sec min hour day-of-month month day-of-week"
                    ));
                }
                cron::Schedule::from_str(expr)
                    .map_err(|e| format!("parameters.cron {expr:?} is not a valid cron expression: {e}"))?;
                match field("timezone") {
                    None | Some(serde_json::Value::Null) => Ok(()),
                    Some(tz) => match tz.as_str().map(str::parse::<chrono_tz::Tz>) {
                        Some(Ok(_)) => Ok(()),
                        _ => Err(format!("parameters.timezone {tz} is not an IANA time zone such as \"Europe/Paris\"")),
                    },
                }
            }
            TriggerType::Date => match field("date").and_then(|v| v.as_str()) {
                Some(d) if chrono::DateTime::parse_from_rfc3339(d).is_ok() => Ok(()),
                Some(d) => Err(format!("parameters.date {d:?} is not an ISO-8601 date-time with a time zone")),
                None => Err("timer.date needs parameters.date (ISO-8601)".into()),
            },
            TriggerType::Webhook | TriggerType::Custom => Ok(()),
        }
    }
}

impl Serialize for TriggerType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TriggerType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TriggerType::parse(&s).map_err(serde::de::Error::custom)
    }
}
