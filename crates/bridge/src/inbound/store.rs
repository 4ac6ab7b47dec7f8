//! Turning inbound messages into events: each message's trigger (its tenant's, by ref),
//! then the event with its change-log row, source `amqp`. The messages that arrived
//! together are written together ([`events`]: one statement, one commit); one message
//! alone, or each of a batch the database refused because of one row, through [`event`].

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
    let Some(trigger) = trigger else {
        return Ok(Stored::Refused(refusal(message, None).unwrap_or_default()));
    };
    if let Some(reason) = refusal(message, Some((trigger.trigger_type, trigger.enabled))) {
        return Ok(Stored::Refused(reason));
    }
    let inserted = sqlx::query_file_scalar!(
        "../../sql/event/insert.sql",
        message.tenant_id,
        trigger.id,
        trigger.trigger_ref,
        message.payload,
        "amqp"
    )
    .fetch_optional(pool)
    .await;
    match inserted {
        Ok(Some(id)) => {
            attune_core::metrics::events_created("amqp", 1);
            Ok(Stored::Event(id))
        }
        Ok(None) => Ok(Stored::Refused(format!("trigger `{}` was deleted", trigger.trigger_ref))),
        Err(sqlx::Error::Database(e)) if refuses_this_row(e.code().as_deref()) => {
            Ok(Stored::Refused(format!("the database refused the event: {}", excerpt(e.message(), 200))))
        }
        Err(e) => Err(e),
    }
}

/// Commits `messages` as events with one statement and one commit (`sql/bridge/
/// inbound_events.sql`), answering each in order. When the database refuses the statement
/// because of one row's data (SQLSTATE class 22 or 23), each message is stored on its own
/// ([`event`]), so only that one is refused. An error is the database's (transient: every
/// message of the batch is retried).
pub async fn events(pool: &PgPool, messages: &[&Inbound]) -> Result<Vec<Stored>, sqlx::Error> {
    if messages.len() < 2 {
        return one_by_one(pool, messages).await;
    }
    let tenants: Vec<i64> = messages.iter().map(|m| m.tenant_id).collect();
    let refs: Vec<String> = messages.iter().map(|m| m.trigger_ref.clone()).collect();
    let payloads: Vec<serde_json::Value> = messages.iter().map(|m| m.payload.clone()).collect();
    let rows = match sqlx::query_file!("../../sql/bridge/inbound_events.sql", &tenants, &refs, &payloads)
        .fetch_all(pool)
        .await
    {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(e)) if refuses_this_row(e.code().as_deref()) => {
            return one_by_one(pool, messages).await
        }
        Err(e) => return Err(e),
    };
    let mut answers = Vec::with_capacity(messages.len());
    let mut created = 0;
    for (message, row) in messages.iter().zip(rows) {
        let trigger = row.trigger_type.zip(row.enabled);
        answers.push(match (row.event_id, refusal(message, trigger)) {
            (Some(id), _) => {
                created += 1;
                Stored::Event(id)
            }
            (None, Some(reason)) => Stored::Refused(reason),
            // The statement and `refusal` disagree on what may become an event.
            (None, None) => Stored::Refused("the event was not written".into()),
        });
    }
    attune_core::metrics::events_created("amqp", created);
    Ok(answers)
}

/// [`event`] for each of `messages`, in order.
async fn one_by_one(pool: &PgPool, messages: &[&Inbound]) -> Result<Vec<Stored>, sqlx::Error> {
    let mut answers = Vec::with_capacity(messages.len());
    for message in messages {
        answers.push(event(pool, message).await?);
    }
    Ok(answers)
}

/// Why `message` cannot become an event of its trigger (`trigger`: its type and whether it
/// is enabled; None: no such trigger in the message's tenant), or None when it can.
fn refusal(message: &Inbound, trigger: Option<(TriggerType, bool)>) -> Option<String> {
    let shown = excerpt(&message.trigger_ref, 100);
    match trigger {
        None => Some(format!("no trigger `{shown}` in tenant {}", message.tenant_id)),
        Some((kind, _)) if !matches!(kind, TriggerType::Webhook | TriggerType::Custom) => Some(format!(
            "trigger `{shown}` is a {} trigger; only webhook and custom triggers take inbound messages",
            kind.as_str()
        )),
        Some((_, false)) => Some(format!("trigger `{shown}` is disabled")),
        Some((_, true)) => None,
    }
}

/// SQLSTATE classes about the row itself, which no retry changes: 22 (data exception, e.g.
/// a value out of range or a string PostgreSQL's jsonb refuses) and 23 (integrity: a
/// constraint the row breaks).
fn refuses_this_row(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_row_errors_are_permanent() {
        assert!(refuses_this_row(Some("22P05")), "unsupported unicode escape in jsonb");
        assert!(refuses_this_row(Some("23514")), "check constraint: the row breaks it");
        assert!(!refuses_this_row(Some("40001")), "serialization failure: retry");
        assert!(!refuses_this_row(Some("57P01")), "admin shutdown: retry");
        assert!(!refuses_this_row(None));
    }
}
