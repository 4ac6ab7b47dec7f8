//! The change log (`attune.change_log`): every change WebSocket clients and RabbitMQ
//! consumers hear about, appended by the statement that makes the change (in its
//! transaction), read here in id order by the notifier and the bridge.
//!
//! **Never skipping a row committed out of order.** Ids come from a sequence, taken when
//! a row is inserted; transactions commit in another order. A reader that moved its
//! cursor past a missing id could miss that row for good when its transaction commits
//! later. So [`Tail`] delivers rows only while ids are contiguous. At a gap it stops and
//! notes the snapshot's `xmax` (every transaction that could hold the missing id had
//! started by then, since a later id was already visible); once the oldest transaction
//! still running (`pg_snapshot_xmin`) is past that `xmax`, every holder has committed or
//! rolled back, so a still-missing id will never appear (a rollback, or a sequence value
//! never used) and the gap is passed over — after [`GAP_GRACE`] at least, for the moment
//! between a writer taking its id and getting its transaction id. A gap whose row commits
//! lasts as long as that writer's transaction: milliseconds.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;

/// One change, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub entity_type: String,
    pub entity_id: i64,
    pub event: String,
    pub data: Value,
    pub created_at: DateTime<Utc>,
}

impl Change {
    /// The message of the WebSocket stream and of the bridge (API.md "WebSocket stream").
    pub fn message(&self) -> Value {
        json!({
            "id": self.id,
            "event": self.event,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "data": self.data,
            "timestamp": self.created_at,
        })
    }

    /// The bridge's routing key: `<entity_type>.<event name>`, e.g. `execution.status_changed`.
    pub fn routing_key(&self) -> &str {
        &self.event
    }
}

/// A gap seen at `id`, passed over once the snapshot's oldest running transaction is at
/// or past `xmax` (the first transaction id not yet started when the gap was seen) and
/// [`GAP_GRACE`] has passed since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    id: i64,
    xmax: i64,
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
}

impl Tail {
    /// Delivers the rows after `cursor` (0: from the oldest retained row).
    pub fn after(cursor: i64) -> Tail {
        Tail { cursor, gap: None }
    }

    /// A tail that starts at the end of the log, once every row up to there is final: it
    /// waits for the transactions running now to end, and [`GAP_GRACE`], so a row with a
    /// lower id committed later cannot be missed.
    pub async fn at_end(pool: &PgPool) -> Result<Tail, sqlx::Error> {
        let start = sqlx::query_file!("../../sql/change_log/end.sql").fetch_one(pool).await?;
        let began = Instant::now();
        loop {
            let now = snapshot(pool).await?;
            if now.0 >= start.xmax && began.elapsed() >= GAP_GRACE {
                return Ok(Tail::after(start.last_id));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The id of the last row delivered (or passed over): everything at or below it is done.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// True while the last [`Tail::next`] stopped at a gap still being waited out: the
    /// reader should ask again soon rather than wait for a wake-up (a rolled-back writer
    /// sends none).
    pub fn at_gap(&self) -> bool {
        // A gap whose row has since been delivered is stale, not current.
        self.gap.is_some_and(|gap| gap.id == self.cursor + 1)
    }

    /// The next rows, at most `limit`, in id order; empty when there is nothing new yet.
    pub async fn next(&mut self, pool: &PgPool, limit: i64) -> Result<Vec<Change>, sqlx::Error> {
        let rows = sqlx::query_file!("../../sql/change_log/after.sql", self.cursor, limit).fetch_all(pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if row.id != self.cursor + 1 && !self.pass_gap(row.xmin, row.xmax) {
                break;
            }
            self.cursor = row.id;
            out.push(Change {
                id: row.id,
                tenant_id: row.tenant_id,
                entity_type: row.entity_type,
                entity_id: row.entity_id,
                event: row.event,
                data: row.data,
                created_at: row.created_at,
            });
        }
        Ok(out)
    }

    /// At a gap after the cursor, seen in a read whose snapshot had bounds `xmin`/`xmax`:
    /// true when it can be passed over. Only a snapshot taken after every transaction that
    /// could hold the missing id had ended — the very snapshot the rows were read in — may
    /// decide that: a row committed meanwhile would be among those rows.
    fn pass_gap(&mut self, xmin: i64, xmax: i64) -> bool {
        let missing = self.cursor + 1;
        match self.gap {
            Some(gap) if gap.id == missing && xmin >= gap.xmax && gap.seen.elapsed() >= GAP_GRACE => {
                self.gap = None;
                true
            }
            Some(gap) if gap.id == missing => false,
            _ => {
                self.gap = Some(Gap { id: missing, xmax, seen: Instant::now() });
                false
            }
        }
    }
}

/// The current snapshot's (xmin, xmax) as numbers.
async fn snapshot(pool: &PgPool) -> Result<(i64, i64), sqlx::Error> {
    let s = sqlx::query_file!("../../sql/change_log/snapshot.sql").fetch_one(pool).await?;
    Ok((s.xmin, s.xmax))
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
