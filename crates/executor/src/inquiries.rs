//! Inquiries: runs executions of runner type `inquiry` (`core.ask`) in the executor.
//!
//! Each round, one transaction per kind of work (all batched, all `FOR UPDATE SKIP
//! LOCKED`, so several executors share the work and a crash loses nothing):
//! - **open**: claims `scheduled` inquiry executions, checks their parameters
//!   ([`Ask::from_parameters`]), creates the inquiry rows and leaves the executions
//!   `paused` (or `failed`, naming the bad parameter);
//! - **expire**: pending inquiries past `expires_at` become `expired` and their executions
//!   end with the default response (or fail without one). The inquiry row is the timer:
//!   nothing waits in memory, so a restart loses no expiry;
//! - **cancel**: inquiry executions asked to cancel end `canceled`, their inquiries too.
//!
//! Answers come through the API (`POST /api/v1/inquiries/{id}/respond`). A workflow waiting
//! on an inquiry is paused and resumed by the workflow engine, which follows its children.

use std::time::Duration;

use attune_core::domain::inquiry::Ask;
use attune_core::domain::RunnerType::Inquiry;
use attune_core::execution::unseal_parameters;
use attune_core::wakeup::{Channel, Tags};
use attune_core::{Context, Shutdown};
use serde_json::{json, Value};

/// Executions (or inquiries) taken per transaction.
pub const BATCH: i64 = 200;
/// Expiry is checked at least this often (so an inquiry ends within a second of its TTL).
const POLL: Duration = Duration::from_secs(1);

/// Runs the inquiry rounds until `shutdown`; a round in progress always commits first.
pub async fn run(ctx: Context, shutdown: Shutdown) -> anyhow::Result<()> {
    let change = ctx.notifier.hint(Channel::Change);
    // Woken by scheduled executions of runner type `inquiry` only.
    let wakeup =
        ctx.notifier.subscribe_tagged(&[Channel::Scheduled, Channel::Cancel], Tags::runners([Inquiry])).await?;
    while !shutdown.is_cancelled() {
        match round(&ctx).await {
            Ok(0) => {}
            Ok(n) => {
                change.poke();
                if n as i64 >= BATCH {
                    continue;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "inquiry round failed; it is retried");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        wakeup.wait(POLL, &shutdown).await;
    }
    tracing::debug!("inquiries stopped");
    Ok(())
}

/// One round of each kind; returns how many executions or inquiries moved.
pub async fn round(ctx: &Context) -> Result<usize, sqlx::Error> {
    // One look first: most rounds (woken by every scheduled batch) have nothing to do.
    let work = sqlx::query_file!("../../sql/inquiry/work.sql").fetch_one(&ctx.pool).await?;
    let opened = if work.open { open(ctx).await? } else { 0 };
    let mut expired = 0;
    if work.expire {
        let mut tx = ctx.pool.begin().await?;
        expired = sqlx::query_file_scalar!("../../sql/inquiry/expire.sql", BATCH).fetch_one(&mut *tx).await?;
        tx.commit().await?;
    }
    let mut canceled = 0;
    if work.cancel {
        let mut tx = ctx.pool.begin().await?;
        canceled = sqlx::query_file_scalar!("../../sql/inquiry/cancel.sql", BATCH).fetch_one(&mut *tx).await?;
        tx.commit().await?;
    }
    if expired + canceled > 0 {
        tracing::debug!(expired, canceled, "inquiries ended");
    }
    Ok(opened + expired as usize + canceled as usize)
}

/// The binds of `open.sql`: one array per column.
#[derive(Default)]
struct Opening {
    ids: Vec<i64>,
    statuses: Vec<String>,
    prompts: Vec<String>,
    schemas: Vec<Value>,
    ttls: Vec<i64>,
    defaults: Vec<Option<Value>>,
    roles: Vec<Value>,
    users: Vec<Value>,
    results: Vec<Option<Value>>,
}

impl Opening {
    fn push(&mut self, id: i64, ask: Result<Ask, String>) {
        self.ids.push(id);
        match ask {
            Ok(ask) => {
                self.statuses.push("paused".into());
                self.prompts.push(ask.prompt);
                self.schemas.push(ask.schema);
                self.ttls.push(ask.ttl_seconds);
                self.defaults.push(ask.default_response);
                self.roles.push(json!(ask.roles));
                self.users.push(json!(ask.users));
                self.results.push(None);
            }
            Err(error) => {
                self.statuses.push("failed".into());
                self.prompts.push(String::new());
                self.schemas.push(json!({}));
                self.ttls.push(0);
                self.defaults.push(None);
                self.roles.push(json!([]));
                self.users.push(json!([]));
                self.results.push(Some(json!({"exit_code": null, "output": null, "truncated": false,
                                              "error": error, "failure_reason": "invalid_parameters"})));
            }
        }
    }
}

/// Opens the inquiries of the scheduled inquiry executions (one transaction).
async fn open(ctx: &Context) -> Result<usize, sqlx::Error> {
    let mut tx = ctx.pool.begin().await?;
    let claimed = sqlx::query_file!("../../sql/inquiry/claim_scheduled.sql", BATCH).fetch_all(&mut *tx).await?;
    if claimed.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    let mut o = Opening::default();
    for row in &claimed {
        let params = unseal_parameters(&ctx.keys.encryption, &row.parameters, row.secret_params.as_deref());
        o.push(row.id, params.and_then(|p| Ask::from_parameters(&p)));
    }
    let opened = sqlx::query_file!(
        "../../sql/inquiry/open.sql",
        &o.ids,
        &o.statuses,
        &o.prompts,
        &o.schemas,
        &o.ttls,
        &o.defaults as &[Option<Value>],
        &o.roles,
        &o.users,
        &o.results as &[Option<Value>],
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for row in &opened {
        tracing::debug!(inquiry = row.id, execution = row.execution_id, "inquiry opened");
    }
    Ok(claimed.len())
}
