//! The rule engine: events in, enforcements and executions out.
//!
//! Each round claims a batch of unprocessed events (`FOR UPDATE SKIP LOCKED`, so several
//! engines share the work and never take the same event), matches every enabled rule of
//! each event's trigger, and in the same transaction inserts one enforcement per match,
//! the execution of each, and marks the events processed. The executions are admitted
//! here with the scheduler's own rules ([`attune_core::admission::admit`]): they are inserted
//! `scheduled` (or `failed`, naming the bad parameter), a stage less of latency. A crash anywhere
//! before the commit leaves the events unprocessed for the next round; the unique
//! (rule, event) constraint makes a second enforcement impossible anyway.
//!
//! # Layout
//! - [`cache`]: the enabled rules by trigger, reloaded when the definitions change, with
//!   what each rule's templates read of the datastore worked out at load.
//! - [`datastore`]: the datastore items a batch's templates read (`datastore.KEY`,
//!   `secret.KEY`), loaded fresh for each batch in one query — none when no matching rule
//!   reads any — and each rule's view of them.
//! - [`write`]: the batch's enforcements, executions and processed events, one statement.
//!
//! Secrets read by templates stay secret: a top-level parameter whose template reads
//! `secret` is sealed like the action's secret parameters, and every message (template
//! error, refused parameters) has the secret values the rule may read replaced by `********`.

mod cache;
mod datastore;
mod write;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use attune_core::admission::{admit_rendered, ActionTerms, Admission};
use attune_core::datastore::{load_for_templates, TemplateItems};
use attune_core::domain::{templates, ExecutionStatus};
use attune_core::held::Held;
use attune_core::wakeup::{Channel, Hint, Tags};
use attune_core::{Context, Shutdown};
use minijinja::Environment;
use serde_json::{json, Value};
use sqlx::{Connection as _, PgConnection};

use cache::{Rule, RuleCache};
use write::Matched;

/// Events claimed per round. Large enough to amortise the round trips at thousands of
/// events per second, small enough to keep each transaction short.
pub const BATCH: i64 = 500;
/// Polling fallback for a missed NOTIFY.
const POLL: Duration = Duration::from_secs(1);

/// One row of `claim_events.sql`.
#[derive(Debug)]
struct EventRow {
    id: i64,
    tenant_id: Option<i64>,
    trigger_id: Option<i64>,
    trigger_ref: String,
    payload: Value,
    definitions_version: i64,
}

/// The tenant a rule's match on an event runs in: a tenant's rule sees its own tenant's
/// events and system triggers' events; a system rule sees every tenant's events.
fn tenant_of(rule_tenant: Option<i64>, event_tenant: Option<i64>) -> Option<i64> {
    match (rule_tenant, event_tenant) {
        (Some(r), Some(e)) if r == e => Some(r),
        (Some(r), None) => Some(r),
        (None, Some(e)) => Some(e),
        _ => None,
    }
}

pub struct RuleEngine {
    ctx: Context,
    env: Environment<'static>,
    cache: RuleCache,
    /// Wakes the workers once a batch of scheduled executions is committed.
    scheduled: Option<Hint>,
    /// Wakes the change-log readers (notifier, bridge) once a batch's changes are committed.
    changes: Option<Hint>,
}

impl RuleEngine {
    pub fn new(ctx: Context) -> RuleEngine {
        RuleEngine { ctx, env: templates::environment(), cache: RuleCache::default(), scheduled: None, changes: None }
    }

    /// Claims and processes batches until `shutdown`. The drain: no new claim after it, and
    /// the round in progress runs to its commit (events claimed are never left half done).
    pub async fn run(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.scheduled = Some(self.ctx.notifier.hint(Channel::Scheduled));
        self.changes = Some(self.ctx.notifier.hint(Channel::Change));
        let wakeup = self.ctx.notifier.subscribe(&[Channel::Event, Channel::Rule]).await?;
        // The rounds' connection, kept from one to the next (see `Held`).
        let mut conn = Held::new(self.ctx.pool.clone());
        while !shutdown.is_cancelled() {
            let round = match conn.get().await {
                Ok(c) => self.round(c).await,
                Err(e) => Err(e),
            };
            match round {
                // A full batch: there is probably more right away.
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    conn.reset();
                    tracing::error!(error = %e, "rule engine round failed; the events stay claimable");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
            }
            // Only this wait is cut short by shutdown, never a round: the batch in hand
            // always commits (or rolls back whole) before the loop ends.
            wakeup.wait(POLL, &shutdown).await;
        }
        tracing::debug!("rule engine stopped");
        Ok(())
    }

    /// Claims and processes one batch on `conn`; returns how many events it took.
    pub async fn round(&mut self, conn: &mut PgConnection) -> Result<usize, sqlx::Error> {
        let started = Instant::now();
        let mut tx = conn.begin().await?;
        let events =
            sqlx::query_file_as!(EventRow, "../../sql/executor/claim_events.sql", BATCH).fetch_all(&mut *tx).await?;
        if events.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // The version comes from the claim's own snapshot: every rule change committed
        // before a claimed event was inserted is seen.
        self.cache.refresh(&mut tx, events[0].definitions_version).await?;
        // Datastore values are read fresh for every batch (the cache holds only which keys
        // each rule reads); a batch whose rules read none makes no query.
        let wanted = datastore::wanted(&self.cache, &events);
        let items = load_for_templates(&mut tx, &self.ctx.keys.encryption, &wanted).await?;

        let mut matched = Vec::new();
        for event in &events {
            self.match_event(event, &items, &mut matched);
        }
        write::write(&mut tx, &events, &matched).await?;
        tx.commit().await?;
        attune_core::metrics::enforcements_created(matched.len() as u64);
        if let (false, Some(hint)) = (matched.is_empty(), &self.changes) {
            // For the change-log readers only: no workflow's task is admitted here.
            hint.poke_tagged(Tags::CHANGES);
        }
        if let Some(hint) = &self.scheduled {
            // Wakes the workers of the runner types admitted (none: nobody).
            hint.poke_tagged(Tags::runners(
                matched
                    .iter()
                    .filter(|m| m.outcome.as_ref().is_ok_and(|a| a.status == ExecutionStatus::Scheduled))
                    .map(|m| m.rule.row.runner_type),
            ));
        }
        tracing::debug!(
            rows = events.len(),
            matches = matched.len(),
            datastore_tenants = items.len(),
            ms = started.elapsed().as_millis() as u64,
            "rule engine batch"
        );
        Ok(events.len())
    }

    fn match_event(&self, event: &EventRow, items: &HashMap<i64, TemplateItems>, out: &mut Vec<Matched>) {
        let rules = self.cache.rules_of(event.trigger_id);
        if rules.is_empty() {
            return;
        }
        let context = json!({
            "trigger": {"data": event.payload, "ref": event.trigger_ref},
            "event": {"data": event.payload, "id": event.id, "trigger": event.trigger_ref},
        });
        for cached in rules {
            let Some(tenant_id) = tenant_of(cached.row.tenant_id, event.tenant_id) else { continue };
            let items = items.get(&tenant_id);
            let mut context = context.clone();
            context["rule"] = json!({"id": cached.row.id, "ref": cached.row.rule_ref});
            let Some(rendered) = self.evaluate(cached, items, &mut context) else { continue };
            let outcome = rendered.map(|params| self.admit(cached, params));
            let outcome = redact(cached, items, outcome);
            out.push(Matched { tenant_id, rule: cached.clone(), event_id: event.id, outcome });
        }
    }

    /// One rule on one event: `None` when its criteria are false, else its rendered action
    /// parameters, or the error (naming the rule) that fails the enforcement.
    fn evaluate(
        &self,
        rule: &Rule,
        items: Option<&TemplateItems>,
        context: &mut Value,
    ) -> Option<Result<Value, String>> {
        let name = &rule.row.rule_ref;
        if !rule.reads.is_empty() {
            datastore::add_to_context(&rule.reads, items, context);
        }
        if let Some(criteria) = &rule.row.criteria {
            let verdict = datastore::check_readable(&rule.criteria_reads.secret, items)
                .and_then(|()| templates::eval_criteria(&self.env, criteria, context));
            match verdict {
                Ok(false) => return None,
                Ok(true) => {}
                Err(e) => return Some(Err(format!("rule {name}: {e}"))),
            }
        }
        let params = datastore::check_readable(&rule.params_reads.secret, items)
            .and_then(|()| templates::render_value(&self.env, "action_params", &rule.row.action_params, context))
            .and_then(|params| templates::check_rendered("action_params", &params).map(|()| params));
        Some(params.map_err(|e| format!("rule {name}: {e}")))
    }

    /// The scheduler's admission ([`attune_core::admission`]), done here for rule-created
    /// executions: they are inserted already `scheduled` (or `failed`, naming the bad
    /// parameter), which saves a whole stage of latency. The scheduler still admits manual runs.
    fn admit(&self, rule: &Rule, params: Value) -> Admission {
        let row = &rule.row;
        let terms = ActionTerms {
            action_ref: &row.action_ref,
            runner_type: row.runner_type,
            // Rules of disabled actions are not in the cache.
            enabled: true,
            schema: Some(&rule.schema),
            secret_names: &rule.secret_names,
            timeout_seconds: row.timeout_seconds,
            retry: row.retry.as_ref(),
        };
        admit_rendered(&self.ctx, &terms, params)
    }
}

/// A match's outcome with every secret value the rule may read replaced by `********` in
/// its messages (a template error or a refused parameter may quote a rendered value).
fn redact(rule: &Rule, items: Option<&TemplateItems>, outcome: Result<Admission, String>) -> Result<Admission, String> {
    if rule.reads.secret.is_empty() {
        return outcome;
    }
    let secrets = datastore::secrets_read(&rule.reads.secret, items);
    match outcome {
        Err(e) => Err(templates::redact(&e, secrets)),
        Ok(mut admission) => {
            if let Some(error) = admission.result.as_mut().and_then(|r| r.get_mut("error")) {
                if let Some(text) = error.as_str() {
                    *error = Value::String(templates::redact(text, secrets));
                }
            }
            Ok(admission)
        }
    }
}
