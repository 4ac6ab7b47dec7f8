//! Turning an inbound message into an event: its tenant's trigger, looked up by ref, then
//! the event with its change-log row (`sql/event/insert.sql`, source `amqp`).

use attune_core::domain::TriggerType;
use attune_core::quoting::excerpt;
use sqlx::PgPool;

use super::parse::Inbound;

/// What became of a message the database answered for.
#[derive(Debug, Clone, PartialEq)]
pub enum Stored {
    /// The event's id: committed.
    Event(i64),
    /// It can never become an event; the reason goes to the dead-letter queue.
    Refused(String),
}

struct Trigger {
    id: i64,
    trigger_ref: String,
    trigger_type: TriggerType,
    enabled: bool,
}

/// Commits `message` as an event of its trigger, or says why it cannot be one. An error
/// is the database's (transient: the message is retried).
pub async fn event(pool: &PgPool, message: &Inbound) -> Result<Stored, sqlx::Error> {
    let trigger =
        sqlx::query_file_as!(Trigger, "../../sql/bridge/inbound_trigger.sql", message.tenant_id, message.trigger_ref)
            .fetch_optional(pool)
            .await?;
    let shown = excerpt(&message.trigger_ref, 100);
    let Some(trigger) = trigger else {
        return Ok(Stored::Refused(format!("no trigger `{shown}` in tenant {}", message.tenant_id)));
    };
    if !matches!(trigger.trigger_type, TriggerType::Webhook | TriggerType::Custom) {
        return Ok(Stored::Refused(format!(
            "trigger `{shown}` is a {} trigger; only webhook and custom triggers take inbound messages",
            trigger.trigger_type.as_str()
        )));
    }
    if !trigger.enabled {
        return Ok(Stored::Refused(format!("trigger `{shown}` is disabled")));
    }
    let inserted = sqlx::query_file_scalar!(
        "../../sql/event/insert.sql",
        message.tenant_id,
        trigger.id,
        trigger.trigger_ref,
        message.payload,
        "amqp"
    )
    .fetch_one(pool)
    .await;
    match inserted {
        Ok(id) => {
            attune_core::metrics::events_created("amqp", 1);
            Ok(Stored::Event(id))
        }
        Err(sqlx::Error::Database(e)) if refuses_this_row(e.code().as_deref()) => {
            Ok(Stored::Refused(format!("the database refused the event: {}", excerpt(e.message(), 200))))
        }
        Err(e) => Err(e),
    }
}

/// SQLSTATE classes about the row itself, which no retry changes: 22 (data exception, e.g.
/// a value out of range or a string PostgreSQL's jsonb refuses) and 23 (integrity: the
/// trigger was deleted meanwhile).
fn refuses_this_row(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_row_errors_are_permanent() {
        assert!(refuses_this_row(Some("22P05")), "unsupported unicode escape in jsonb");
        assert!(refuses_this_row(Some("23503")), "foreign key: the trigger is gone");
        assert!(!refuses_this_row(Some("40001")), "serialization failure: retry");
        assert!(!refuses_this_row(Some("57P01")), "admin shutdown: retry");
        assert!(!refuses_this_row(None));
    }
}
