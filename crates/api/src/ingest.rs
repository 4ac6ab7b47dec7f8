//! The webhook intake: group commit.
//!
//! One webhook is one event, and an event is only accepted (202) once it is durable — so
//! written one by one, every webhook would pay a transaction and a commit's flush of its
//! own, and the commit rate would be the ceiling of the whole pipeline. Instead, requests
//! queue here and a few writer tasks take turns, leader and followers: the leader takes
//! the first request waiting and every other one already queued (at most
//! `api.ingest_batch`), writes them all with one statement (`sql/api/webhook_events.sql`)
//! and one commit, and answers each request with its own event id; meanwhile the next
//! writer gathers what arrives. There is no timer: a lone webhook is written at once,
//! and under load batches grow by themselves to what arrived during the previous commit.
//!
//! Bounded: at most `api.ingest_queue` requests wait; beyond that a request is refused at
//! once with 503 and `Retry-After` (backpressure, not unbounded memory). A batch the
//! database refuses as a whole because of one request's data (a body PostgreSQL cannot
//! store, e.g. a `\u0000`) is written again one request at a time, so only that request
//! fails; any other failure (the database unreachable) fails exactly the requests of that
//! batch, each with a 503 saying nothing was stored.

use std::sync::Arc;

use attune_core::db::is_data_exception;
use attune_core::held::Held;
use attune_core::wakeup::Hint;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::error::ApiError;

/// Writer tasks taking turns: one commits while the next gathers the following batch.
const WRITERS: usize = 2;

/// One webhook request waiting to be written.
pub struct Webhook {
    /// The key from the webhook's URL.
    pub key: String,
    /// The body, already checked to be JSON (shared: a request may be offered twice).
    pub body: Arc<str>,
    /// The request's signature was checked against the trigger's `webhook_secret`.
    pub verified: bool,
    pub arrived: DateTime<Utc>,
}

/// What became of one request.
pub enum Stored {
    /// Committed as this event.
    Event(i64),
    /// No enabled webhook trigger takes it as it is (unknown key, a secret not proven, a
    /// disabled trigger): the caller finds out which and answers.
    NoTrigger,
}

struct Waiting {
    webhook: Webhook,
    answer: oneshot::Sender<Result<Stored, ApiError>>,
}

/// The intake's handle: cheap to clone; its writers end when the last clone is dropped.
#[derive(Clone)]
pub struct Ingest {
    queue: mpsc::Sender<Waiting>,
    capacity: usize,
}

impl Ingest {
    /// Starts the writers on `pool`; `batch` is the most requests one commit writes,
    /// `capacity` the most that wait. `written` is poked once per commit that stored any.
    pub fn start(pool: PgPool, batch: usize, capacity: usize, written: Hint) -> Ingest {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..WRITERS {
            let writer = Writer {
                conn: Held::new(pool.clone()),
                receiver: receiver.clone(),
                batch: batch.max(1),
                written: written.clone(),
            };
            tokio::spawn(writer.run());
        }
        Ingest { queue, capacity }
    }

    /// Queues `webhook` and waits for its commit.
    pub async fn store(&self, webhook: Webhook) -> Result<Stored, ApiError> {
        let (answer, answered) = oneshot::channel();
        self.queue.try_send(Waiting { webhook, answer }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ApiError::Overloaded(format!(
                "the webhook intake is full ({} requests waiting to be written); retry in a second",
                self.capacity
            )),
            mpsc::error::TrySendError::Closed(_) => ApiError::Unavailable("the API is shutting down".into()),
        })?;
        answered
            .await
            .map_err(|_| ApiError::Unavailable("the webhook intake stopped before writing this request".into()))?
    }
}

struct Writer {
    /// Its connection, kept from one commit to the next (see `Held`).
    conn: Held,
    receiver: Arc<Mutex<mpsc::Receiver<Waiting>>>,
    batch: usize,
    written: Hint,
}

impl Writer {
    async fn run(mut self) {
        loop {
            let batch = {
                // The leader: holds the queue until it has its batch, then lets the next
                // writer gather while it commits.
                let mut receiver = self.receiver.lock().await;
                let Some(first) = receiver.recv().await else { return };
                let mut batch = Vec::with_capacity(self.batch.min(64));
                batch.push(first);
                while batch.len() < self.batch {
                    match receiver.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                batch
            };
            self.write(batch).await;
        }
    }

    /// Writes `batch` and answers every request in it.
    async fn write(&mut self, batch: Vec<Waiting>) {
        attune_core::metrics::ingest_batch(batch.len());
        match self.insert(&batch).await {
            Ok(ids) => self.answer(batch, ids),
            // One request's data spoiled the statement: each on its own, so only it fails.
            Err(e) if batch.len() > 1 && is_data_exception(&e) => {
                for waiting in batch {
                    let one = vec![waiting];
                    match self.insert(&one).await {
                        Ok(ids) => self.answer(one, ids),
                        Err(e) => fail(one, e),
                    }
                }
            }
            Err(e) => fail(batch, e),
        }
    }

    /// [`insert`] on the writer's connection; after an error other than the data's, the
    /// next statement takes another.
    async fn insert(&mut self, batch: &[Waiting]) -> Result<Vec<Option<i64>>, sqlx::Error> {
        let inserted = match self.conn.get().await {
            Ok(conn) => insert(conn, batch).await,
            Err(e) => Err(e),
        };
        if inserted.as_ref().is_err_and(|e| !is_data_exception(e)) {
            self.conn.reset();
        }
        inserted
    }

    /// Answers each request with its event id (`ids[i]` is the i-th request's, if any).
    fn answer(&self, batch: Vec<Waiting>, ids: Vec<Option<i64>>) {
        if ids.iter().any(Option::is_some) {
            self.written.poke();
        }
        for (waiting, id) in batch.into_iter().zip(ids) {
            // A request whose client went away no longer listens: its event stands.
            let _ = waiting.answer.send(Ok(id.map_or(Stored::NoTrigger, Stored::Event)));
        }
    }
}

/// One statement, one commit for `batch`: the event id of each request, in order.
async fn insert(conn: &mut PgConnection, batch: &[Waiting]) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let mut keys = Vec::with_capacity(batch.len());
    let mut bodies = Vec::with_capacity(batch.len());
    let mut verified = Vec::with_capacity(batch.len());
    let mut arrived = Vec::with_capacity(batch.len());
    for Waiting { webhook, .. } in batch {
        keys.push(webhook.key.as_str());
        bodies.push(&*webhook.body);
        verified.push(webhook.verified);
        arrived.push(webhook.arrived);
    }
    let rows = sqlx::query_file!(
        "../../sql/api/webhook_events.sql",
        &keys as &[&str],
        &bodies as &[&str],
        &verified,
        &arrived
    )
    .fetch_all(conn)
    .await?;
    let mut ids = vec![None; batch.len()];
    for row in rows {
        // `ord` counts from 1 (WITH ORDINALITY).
        if let Some(slot) = usize::try_from(row.ord).ok().and_then(|ord| ids.get_mut(ord.wrapping_sub(1))) {
            *slot = Some(row.id);
        }
    }
    Ok(ids)
}

/// Fails every request of `batch` with the one error that stopped it.
fn fail(mut batch: Vec<Waiting>, e: sqlx::Error) {
    // A request refused for its own data is only ever alone (see `write`): it gets the API's
    // usual answer for such an error (400, naming what the database refused).
    if batch.len() == 1 && is_data_exception(&e) {
        if let Some(waiting) = batch.pop() {
            let _ = waiting.answer.send(Err(ApiError::from(e)));
        }
        return;
    }
    let message = match &e {
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    };
    tracing::warn!(requests = batch.len(), error = %message, "a batch of webhooks could not be written");
    for waiting in batch {
        let error = ApiError::Unavailable(format!(
            "the event could not be stored, nothing was written; send it again ({message})"
        ));
        let _ = waiting.answer.send(Err(error));
    }
}
