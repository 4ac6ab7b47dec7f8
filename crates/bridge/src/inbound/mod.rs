//! Inbound: messages on the queue `attune.inbound` (`bridge.inbound_queue`) become events.
//!
//! Topology, declared at every connect (both durable): the queue, and its dead-letter queue
//! `<queue>.dlq`, reached through the default exchange (the queue's `x-dead-letter-exchange`
//! is `""` and `x-dead-letter-routing-key` is the DLQ's name, so a message rejected by any
//! other tool, or expired by a TTL an operator sets, lands there too).
//!
//! Each message is acknowledged manually; the messages already delivered when one is taken
//! (up to the prefetch, 64) are handled together, their events written by one statement
//! and one commit (group commit):
//! - it becomes an event ([`parse`], then [`store`]): acked only once the event is committed
//!   (a crash in between redelivers it: at least once);
//! - it can never become one (a missing or bad header, no such trigger in that tenant, a
//!   trigger that is disabled or not a webhook or custom one, a body that is not JSON):
//!   published to the DLQ with its headers plus `x-attune-error` = the reason, confirmed,
//!   then acked — never requeued, so it cannot loop;
//! - the database fails (transient): requeued (nack) after a growing backoff.
//!
//! Every bridge process consumes (competing consumers); there is no leader here.

pub mod parse;
pub mod store;

use std::time::Duration;

use attune_core::wakeup::{Channel as WakeChannel, Hint};
use attune_core::{Context, Shutdown};
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};

use crate::amqp::{self, Backoff, Role};
use store::Stored;

/// Messages RabbitMQ sends ahead of their acks: enough to hide the round trip.
const PREFETCH: u16 = 64;

/// The longest a database failure holds a message before it is requeued.
const RETRY_CAP: Duration = Duration::from_secs(5);

/// The header carrying why a message went to the dead-letter queue.
pub const ERROR_HEADER: &str = "x-attune-error";

/// The queue names, checked once.
#[derive(Clone)]
struct Queues {
    main: ShortString,
    dlq: ShortString,
}

impl Queues {
    fn new(main: &str) -> Result<Queues, String> {
        Ok(Queues {
            main: amqp::short("bridge.inbound_queue", main)?,
            dlq: amqp::short("dead-letter queue", &dlq_name(main))?,
        })
    }
}

/// The dead-letter queue of inbound queue `queue`.
pub fn dlq_name(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Consumes the inbound queue until `shutdown`, reconnecting with capped backoff.
pub async fn run(ctx: Context, url: String, shutdown: Shutdown) -> anyhow::Result<()> {
    let queues = Queues::new(&ctx.config.bridge.inbound_queue).map_err(anyhow::Error::msg)?;
    let name = amqp::connection_name(&ctx, Role::Inbound);
    let hint = ctx.notifier.hint(WakeChannel::Event);
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        let failed = match amqp::connect(&url, &name).await {
            Ok(connection) => {
                let outcome = consume(&ctx, &connection, &queues, &hint, &mut backoff, &shutdown).await;
                let closing = connection.close(200, "attune bridge stopping".into());
                let _ = tokio::time::timeout(amqp::CLOSE_TIMEOUT, closing).await;
                outcome.err()
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            let delay = backoff.delay();
            tracing::warn!(
                url = %amqp::redacted(&url),
                queue = %queues.main,
                error = %e,
                retry_in_ms = delay.as_millis() as u64,
                "bridge: inbound RabbitMQ connection failed; reconnecting"
            );
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
    tracing::info!("bridge inbound stopped");
    Ok(())
}

/// Declares the queues and consumes until `shutdown` (Ok, after the message in hand is
/// settled) or a RabbitMQ failure (Err).
async fn consume(
    ctx: &Context,
    connection: &Connection,
    queues: &Queues,
    hint: &Hint,
    backoff: &mut Backoff,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let channel = connection.create_channel().await.map_err(|e| e.to_string())?;
    declare(&channel, queues).await.map_err(|e| format!("declaring queue {}: {e}", queues.main))?;
    channel.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(|e| e.to_string())?;
    // Dead-lettered copies are confirmed before the original is acked.
    channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(|e| e.to_string())?;
    let mut consumer = channel
        .basic_consume(queues.main.clone(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(queue = %queues.main, dlq = %queues.dlq, "bridge: consuming inbound messages");
    backoff.reset();
    let mut retries = Backoff::new();
    loop {
        let next = tokio::select! {
            next = consumer.next() => next,
            _ = shutdown.cancelled() => break,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("the broker cancelled the consumer (queue deleted?)".into()),
        };
        // Group commit: whatever else has already arrived is written with it.
        let mut batch = vec![delivery];
        let mut failed = None;
        while batch.len() < usize::from(PREFETCH) {
            match consumer.next().now_or_never() {
                Some(Some(Ok(delivery))) => batch.push(delivery),
                Some(Some(Err(e))) => {
                    failed = Some(e.to_string());
                    break;
                }
                Some(None) => {
                    failed = Some("the broker cancelled the consumer (queue deleted?)".into());
                    break;
                }
                None => break,
            }
        }
        handle(ctx, &channel, queues, hint, batch, &mut retries, shutdown).await?;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    // The drain: no new deliveries; those prefetched but not acked go back to the queue
    // when the channel closes.
    let closing = async {
        let _ = channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
        let _ = channel.close(200, "attune bridge stopping".into()).await;
    };
    let _ = tokio::time::timeout(amqp::CLOSE_TIMEOUT, closing).await;
    Ok(())
}

/// The inbound queue (dead-lettering to its DLQ) and the DLQ, both durable.
async fn declare(channel: &Channel, queues: &Queues) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    channel.queue_declare(queues.dlq.clone(), durable, FieldTable::default()).await?;
    let mut arguments = FieldTable::default();
    arguments.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    arguments.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(queues.dlq.as_str().into()));
    channel.queue_declare(queues.main.clone(), durable, arguments).await?;
    Ok(())
}

/// Settles a batch of messages, each as one of: an event (ack), the DLQ (publish, then
/// ack) or a retry (nack, requeued, after a backoff). The events of the batch are written
/// by one statement and one commit ([`store::events`]).
async fn handle(
    ctx: &Context,
    channel: &Channel,
    queues: &Queues,
    hint: &Hint,
    batch: Vec<Delivery>,
    retries: &mut Backoff,
    shutdown: &Shutdown,
) -> Result<(), String> {
    let max_body = ctx.config.api.max_body_bytes;
    let parsed: Vec<Result<parse::Inbound, String>> = batch
        .iter()
        .map(|delivery| parse::inbound(delivery.properties.headers().as_ref(), &delivery.data, max_body))
        .collect();
    let messages: Vec<&parse::Inbound> = parsed.iter().filter_map(|p| p.as_ref().ok()).collect();
    let stored = store::events(&ctx.pool, &messages).await;
    if matches!(&stored, Ok(answers) if answers.iter().any(|a| matches!(a, Stored::Event(_)))) {
        hint.poke();
        retries.reset();
    }
    let mut stored = stored.map(Vec::into_iter);
    let ack = BasicAckOptions::default();
    let mut requeue = Vec::new();
    for (delivery, parsed) in batch.into_iter().zip(parsed) {
        let outcome = match (parsed, &mut stored) {
            (Err(reason), _) => Stored::Refused(reason),
            (Ok(_), Ok(answers)) => answers.next().unwrap_or_else(|| Stored::Refused("no answer".into())),
            (Ok(_), Err(_)) => {
                requeue.push(delivery);
                continue;
            }
        };
        match outcome {
            Stored::Event(_) => {
                delivery.ack(ack).await.map_err(|e| e.to_string())?;
            }
            Stored::Refused(reason) => {
                tracing::info!(queue = %queues.main, dlq = %queues.dlq, %reason, "bridge: inbound message dead-lettered");
                dead_letter(channel, queues, &delivery, &reason).await?;
                delivery.ack(ack).await.map_err(|e| e.to_string())?;
            }
        }
    }
    if let Err(e) = stored {
        let delay = retries.delay().min(RETRY_CAP);
        tracing::warn!(error = %e, messages = requeue.len(), retry_in_ms = delay.as_millis() as u64,
            "bridge: cannot store inbound events; requeueing them");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => {}
        }
        let again = BasicNackOptions { requeue: true, ..Default::default() };
        for delivery in requeue {
            delivery.nack(again).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Publishes `delivery` to the DLQ with its properties, its headers and [`ERROR_HEADER`]
/// = `reason`, and waits for RabbitMQ's confirm (mandatory: a missing DLQ is an error, and
/// the original is then not acked).
async fn dead_letter(channel: &Channel, queues: &Queues, delivery: &Delivery, reason: &str) -> Result<(), String> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    headers.insert(ERROR_HEADER.into(), AMQPValue::LongString(reason.into()));
    headers.insert("x-attune-queue".into(), AMQPValue::LongString(queues.main.as_str().into()));
    let properties: BasicProperties = delivery.properties.clone().with_headers(headers).with_delivery_mode(2);
    let options = BasicPublishOptions { mandatory: true, ..Default::default() };
    let confirm = channel
        .basic_publish("".into(), queues.dlq.clone(), options, &delivery.data, properties)
        .await
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    if confirm.is_nack() {
        return Err(format!("RabbitMQ refused the dead-lettered copy for {}", queues.dlq));
    }
    if confirm.take_message().is_some() {
        return Err(format!("the dead-letter queue {} does not exist", queues.dlq));
    }
    Ok(())
}
