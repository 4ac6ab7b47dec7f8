//! The change log (`attune.change_log`): every change WebSocket clients and RabbitMQ
//! consumers hear about, appended by the statement that makes the change (in its
//! transaction), read here in id order by the notifier and the bridge.
//!
//! **Never skipping a row committed out of order.** Ids come from a sequence, taken when
//! a row is inserted; transactions commit in another order. A reader that moved its
//! cursor past a missing id could miss that row for good when its transaction commits
//! later. So [`Tail`] delivers rows only while ids are contiguous. At a gap it stops and
//! takes a transaction id of its own (`sql/change_log/horizon.sql`): every transaction
//! that could hold the missing id had its transaction id before that (a later id was
//! already committed), so once the oldest transaction still running
//! (`pg_snapshot_xmin`) is past it, every holder has committed or rolled back, and a
//! still-missing id will never appear (a rollback, or a sequence value never used): the
//! gap is passed over — after [`GAP_GRACE`] at least, for the moment between a writer
//! taking its id and getting its transaction id. A gap whose row commits lasts as long as
//! that writer's transaction: milliseconds. The rows already committed past a gap are
//! held meanwhile, and the reads that wait ask only for the ids around and after them
//! (`sql/change_log/after.sql`), so a busy log is fetched once, not once per wake-up.
//!
//! The bound is not the snapshot's `xmax`: PostgreSQL makes that the latest *completed*
//! transaction id + 1, and a writer that got its transaction id after the last commit
//! has one at or above it while it runs — a reader waiting only for `xmin >= xmax` passed
//! its gap and lost its row (seen in CI; `tests/e2e/change_log.rs` reproduces it).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::PgPool;

/// One change, as stored.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub entity_type: String,
    pub entity_id: i64,
    pub event: String,
    /// The entity's row as the writer stored it, as JSON text (made by the reading query,
    /// `attune.change_json`): passed into messages as it is, never parsed on the way.
    pub data: Json<Box<RawValue>>,
    pub created_at: DateTime<Utc>,
}

/// The message of the WebSocket stream and of the bridge (API.md "WebSocket stream").
#[derive(Serialize)]
struct Message<'a> {
    id: i64,
    event: &'a str,
    entity_type: &'a str,
    entity_id: i64,
    data: &'a RawValue,
    timestamp: DateTime<Utc>,
}

impl Change {
    /// The message of the WebSocket stream and of the bridge (API.md "WebSocket stream"),
    /// as JSON text.
    pub fn message(&self) -> String {
        let message = Message {
            id: self.id,
            event: &self.event,
            entity_type: &self.entity_type,
            entity_id: self.entity_id,
            data: &self.data.0,
            timestamp: self.created_at,
        };
        serde_json::to_string(&message).expect("a message of strings, numbers and JSON text serialises")
    }

    /// The `status` field of the row, if it has one (an execution's, an inquiry's).
    pub fn status(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Status {
            status: Option<String>,
        }
        serde_json::from_str::<Status>(self.data.0.get()).ok()?.status
    }

    /// The bridge's routing key: `<entity_type>.<event name>`, e.g. `execution.status_changed`.
    pub fn routing_key(&self) -> &str {
        &self.event
    }
}

/// A gap seen at `id`, passed over once the snapshot's oldest running transaction is at
/// or past `horizon` (a transaction id taken right after the gap was seen) and
/// [`GAP_GRACE`] has passed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    id: i64,
    horizon: i64,
    seen: Instant,
}

/// How long a gap is waited for at least. A transaction takes its change-log id from the
/// sequence a moment before it gets its transaction id (at its first write, in the same
/// INSERT): for that moment the snapshot bounds cannot see it. Gaps that are waited out
/// this long are only those of rollbacks; a gap that commits is delivered at once.
pub const GAP_GRACE: Duration = Duration::from_millis(100);

/// A cursor over the change log that delivers every committed row exactly once, in id order.
#[derive(Debug, Clone)]
pub struct Tail {
    cursor: i64,
    gap: Option<Gap>,
    /// Rows read past a gap (the one at `cursor + 1`, and maybe others after it), in id
    /// order: committed, so final. While a gap is waited for, writers go on committing and
    /// poking; each read asks for the ids around these and after them, not for these again.
    ahead: Vec<Change>,
    /// Rows fetched from the database so far.
    fetched: u64,
}

impl Tail {
    /// Delivers the rows after `cursor` (0: from the oldest retained row).
    pub fn after(cursor: i64) -> Tail {
        Tail { cursor, gap: None, ahead: Vec::new(), fetched: 0 }
    }

    /// A tail that starts at the end of the log, once every row up to there is final: it
    /// waits for the transactions running now to end, and [`GAP_GRACE`], so a row with a
    /// lower id committed later cannot be missed.
    pub async fn at_end(pool: &PgPool) -> Result<Tail, sqlx::Error> {
        let start = sqlx::query_file!("../../sql/change_log/end.sql").fetch_one(pool).await?;
        let began = Instant::now();
        loop {
            let xmin = sqlx::query_file_scalar!("../../sql/change_log/snapshot.sql").fetch_one(pool).await?;
            if xmin >= start.horizon && began.elapsed() >= GAP_GRACE {
                return Ok(Tail::after(start.last_id));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The id of the last row delivered (or passed over): everything at or below it is done.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// Rows fetched from the database so far (a row held past a gap is not fetched again
    /// while the gap is waited for).
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// True while the last [`Tail::next`] stopped at a gap still being waited out: the
    /// reader should ask again soon rather than wait for a wake-up (a rolled-back writer
    /// sends none).
    pub fn at_gap(&self) -> bool {
        // A gap whose row has since been delivered is stale, not current.
        self.gap.is_some_and(|gap| gap.id == self.cursor + 1)
    }

    /// The next rows in id order; empty when there is nothing new yet. At most `limit`
    /// rows are fetched per call and at most `limit` held past gaps, so one call delivers
    /// up to twice `limit` (the rows held, once their gap is filled, and the new ones).
    pub async fn next(&mut self, pool: &PgPool, limit: i64) -> Result<Vec<Change>, sqlx::Error> {
        let limit = limit.max(1);
        // The ranges not held, ends excluded: from the cursor to the first row held, between
        // held rows that are not contiguous, from the last one to the end of the log.
        let mut after = vec![self.cursor];
        let mut before = Vec::new();
        for held in &self.ahead {
            let last = after.last_mut().expect("one range at least");
            if held.id == *last + 1 {
                *last = held.id;
            } else {
                before.push(held.id);
                after.push(held.id);
            }
        }
        before.push(i64::MAX);
        let rows = sqlx::query_file!("../../sql/change_log/after.sql", &after, &before, limit).fetch_all(pool).await?;
        // One row at least: the snapshot's xmin, with or without a change.
        let Some(xmin) = rows.first().map(|row| row.xmin) else {
            return Ok(Vec::new());
        };
        let mut fetched: i64 = 0;
        let mut last_fetched = 0_i64;
        let mut read = std::mem::take(&mut self.ahead);
        for row in rows {
            let (Some(id), Some(entity_type), Some(entity_id), Some(event), Some(data), Some(created_at)) =
                (row.id, row.entity_type, row.entity_id, row.event, row.data, row.created_at)
            else {
                continue;
            };
            self.fetched += 1;
            fetched += 1;
            last_fetched = last_fetched.max(id);
            read.push(Change { id, tenant_id: row.tenant_id, entity_type, entity_id, event, data, created_at });
        }
        read.sort_by_key(|change| change.id);
        // A read cut by the limit saw the ids up to its last row, none after it: past that,
        // this read's snapshot decides nothing.
        let seen_until = if fetched >= limit { last_fetched } else { i64::MAX };

        let mut cursor = self.cursor;
        let mut gap = self.gap;
        let mut new_gap = false;
        let mut out = Vec::with_capacity(read.len());
        let mut rest = read.into_iter().peekable();
        while let Some(change) = rest.peek() {
            if change.id > seen_until {
                break;
            }
            if change.id != cursor + 1 {
                // The snapshot the ids up to this row were read in decides: a row committed
                // before it would be among them.
                match gap {
                    Some(g) if g.id == cursor + 1 && xmin >= g.horizon && g.seen.elapsed() >= GAP_GRACE => {
                        gap = None;
                    }
                    Some(g) if g.id == cursor + 1 => break,
                    _ => {
                        new_gap = true;
                        break;
                    }
                }
            }
            let change = rest.next().expect("peeked");
            cursor = change.id;
            out.push(change);
        }
        // What is left lies past a gap (or past what this read saw): held for the next reads,
        // the lowest `limit` rows (the others are read again).
        self.ahead = rest.take(usize::try_from(limit).unwrap_or(0)).collect();
        if new_gap {
            // Taken after the read that saw the gap. On a failure the cursor and the gap
            // stay as they were: the rows delivered here are read again next time.
            let horizon = sqlx::query_file_scalar!("../../sql/change_log/horizon.sql").fetch_one(pool).await?;
            gap = Some(Gap { id: cursor + 1, horizon, seen: Instant::now() });
        }
        self.cursor = cursor;
        self.gap = gap;
        Ok(out)
    }
}

/// The rows of `tenant_id` after `since` up to and including `until`, in id order, at most
/// `limit`: a WebSocket client's replay (the live feed goes on after `until`).
pub async fn replay(
    pool: &PgPool,
    tenant_id: i64,
    entity_types: &[String],
    since: i64,
    until: i64,
    limit: i64,
) -> Result<Vec<Change>, sqlx::Error> {
    sqlx::query_file_as!(Change, "../../sql/change_log/replay.sql", tenant_id, entity_types, since, until, limit)
        .fetch_all(pool)
        .await
}
