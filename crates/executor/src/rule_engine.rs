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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attune_core::admission::{admit, ActionTerms, Admission};
use attune_core::domain::{templates, EnforcementStatus, ExecutionStatus, ParamSchema, RunnerType};
use attune_core::execution::seal_secrets;
use attune_core::wakeup::{Channel, Hint};
use attune_core::{Context, Shutdown};
use minijinja::Environment;
use serde_json::{json, Value};
use sqlx::PgConnection;

/// Events claimed per round. Large enough to amortise the round trips at thousands of
/// events per second, small enough to keep each transaction short.
pub const BATCH: i64 = 500;
/// Polling fallback for a missed NOTIFY.
const POLL: Duration = Duration::from_secs(1);

/// One row of `enabled_rules.sql`.
#[derive(Debug)]
struct RuleRow {
    id: i64,
    tenant_id: Option<i64>,
    rule_ref: String,
    trigger_id: i64,
    criteria: Option<String>,
    action_params: Value,
    action_id: i64,
    action_ref: String,
    runner_type: RunnerType,
    secret_params: Vec<String>,
    param_schema: Value,
    timeout_seconds: Option<i32>,
    retry: Option<Value>,
}

/// A cached rule: its row, and its action's `param_schema` parsed once per cache load.
#[derive(Debug)]
struct Rule {
    row: RuleRow,
    schema: Result<ParamSchema, String>,
}

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

/// Enabled rules by trigger, as of `version` of the definitions.
#[derive(Default)]
struct RuleCache {
    version: Option<i64>,
    by_trigger: HashMap<i64, Vec<Arc<Rule>>>,
}

impl RuleCache {
    /// Reloads when the definitions moved since the last load.
    async fn refresh(&mut self, conn: &mut PgConnection, version: i64) -> Result<(), sqlx::Error> {
        if self.version == Some(version) {
            return Ok(());
        }
        let rows = sqlx::query_file_as!(RuleRow, "../../sql/executor/enabled_rules.sql").fetch_all(&mut *conn).await?;
        self.by_trigger.clear();
        for row in rows {
            let schema = ParamSchema::parse(&row.param_schema);
            self.by_trigger.entry(row.trigger_id).or_default().push(Arc::new(Rule { row, schema }));
        }
        self.version = Some(version);
        tracing::debug!(version, "rule cache reloaded");
        Ok(())
    }
}

pub struct RuleEngine {
    ctx: Context,
    env: Environment<'static>,
    cache: RuleCache,
    /// Wakes the workers once a batch of scheduled executions is committed.
    scheduled: Option<Hint>,
}

/// One (rule, event) match and what it produced.
struct Matched {
    tenant_id: i64,
    rule: Arc<Rule>,
    event_id: i64,
    /// The admitted execution, or the template error that failed the enforcement.
    outcome: Result<Admission, String>,
}

/// The binds of `write_matches.sql`: one array per column, built in one pass over a batch.
#[derive(Default)]
struct MatchColumns {
    // The enforcements ($1..$6), one per match.
    tenant_ids: Vec<i64>,
    rule_ids: Vec<i64>,
    rule_refs: Vec<String>,
    event_ids: Vec<i64>,
    statuses: Vec<EnforcementStatus>,
    errors: Vec<Option<String>>,
    // The executions ($7..$17), one per processed match, keyed by (rule, event).
    run_rule_ids: Vec<i64>,
    run_event_ids: Vec<i64>,
    action_ids: Vec<i64>,
    action_refs: Vec<String>,
    runner_types: Vec<RunnerType>,
    parameters: Vec<Value>,
    secret_params: Vec<Option<Vec<u8>>>,
    run_statuses: Vec<ExecutionStatus>,
    results: Vec<Option<Value>>,
    max_attempts: Vec<i32>,
    timeout_seconds: Vec<i32>,
    // The claimed events ($18), all marked processed.
    processed: Vec<i64>,
}

impl MatchColumns {
    fn of(events: &[EventRow], matched: &[Matched]) -> MatchColumns {
        let mut c = MatchColumns { processed: events.iter().map(|e| e.id).collect(), ..Default::default() };
        for m in matched {
            let rule = &m.rule.row;
            c.tenant_ids.push(m.tenant_id);
            c.rule_ids.push(rule.id);
            c.rule_refs.push(rule.rule_ref.clone());
            c.event_ids.push(m.event_id);
            match &m.outcome {
                Ok(a) => {
                    c.statuses.push(EnforcementStatus::Processed);
                    c.errors.push(None);
                    c.run_rule_ids.push(rule.id);
                    c.run_event_ids.push(m.event_id);
                    c.action_ids.push(rule.action_id);
                    c.action_refs.push(rule.action_ref.clone());
                    c.runner_types.push(rule.runner_type);
                    c.parameters.push(a.parameters.clone());
                    c.secret_params.push(a.secret_params.clone());
                    c.run_statuses.push(a.status);
                    c.results.push(a.result.clone());
                    c.max_attempts.push(a.max_attempts);
                    c.timeout_seconds.push(a.timeout_seconds);
                }
                Err(e) => {
                    c.statuses.push(EnforcementStatus::Failed);
                    c.errors.push(Some(e.clone()));
                }
            }
        }
        c
    }
}

impl RuleEngine {
    pub fn new(ctx: Context) -> RuleEngine {
        RuleEngine { ctx, env: templates::environment(), cache: RuleCache::default(), scheduled: None }
    }

    /// Claims and processes batches until `shutdown`. The drain: no new claim after it, and
    /// the round in progress runs to its commit (events claimed are never left half done).
    pub async fn run(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.scheduled = Some(self.ctx.notifier.hint(Channel::Scheduled));
        let wakeup = self.ctx.notifier.subscribe(&[Channel::Event, Channel::Rule]).await?;
        while !shutdown.is_cancelled() {
            match self.round().await {
                // A full batch: there is probably more right away.
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
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

    /// Claims and processes one batch; returns how many events it took.
    pub async fn round(&mut self) -> Result<usize, sqlx::Error> {
        let started = Instant::now();
        let mut tx = self.ctx.pool.begin().await?;
        let events =
            sqlx::query_file_as!(EventRow, "../../sql/executor/claim_events.sql", BATCH).fetch_all(&mut *tx).await?;
        if events.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // The version comes from the claim's own snapshot: every rule change committed
        // before a claimed event was inserted is seen.
        self.cache.refresh(&mut tx, events[0].definitions_version).await?;

        let mut matched = Vec::new();
        for event in &events {
            self.match_event(event, &mut matched);
        }
        self.write(&mut tx, &events, &matched).await?;
        tx.commit().await?;
        if matched.iter().any(|m| m.outcome.as_ref().is_ok_and(|a| a.status == ExecutionStatus::Scheduled)) {
            if let Some(hint) = &self.scheduled {
                hint.poke();
            }
        }
        tracing::debug!(
            rows = events.len(),
            matches = matched.len(),
            ms = started.elapsed().as_millis() as u64,
            "rule engine batch"
        );
        Ok(events.len())
    }

    fn match_event(&self, event: &EventRow, out: &mut Vec<Matched>) {
        let Some(rules) = event.trigger_id.and_then(|t| self.cache.by_trigger.get(&t)) else { return };
        let context = json!({
            "trigger": {"data": event.payload, "ref": event.trigger_ref},
            "event": {"data": event.payload, "id": event.id, "trigger": event.trigger_ref},
        });
        for cached in rules {
            let rule = &cached.row;
            // A tenant's rule sees its own tenant's events, and system triggers' events.
            let tenant_id = match (rule.tenant_id, event.tenant_id) {
                (Some(r), Some(e)) if r == e => r,
                (Some(r), None) => r,
                (None, Some(e)) => e,
                _ => continue,
            };
            let mut context = context.clone();
            context["rule"] = json!({"id": rule.id, "ref": rule.rule_ref});
            let outcome = match &rule.criteria {
                Some(criteria) => match templates::eval_criteria(&self.env, criteria, &context) {
                    Ok(false) => continue,
                    Ok(true) => Ok(()),
                    Err(e) => Err(e),
                },
                None => Ok(()),
            }
            .and_then(|()| templates::render_value(&self.env, "action_params", &rule.action_params, &context))
            .and_then(|params| templates::check_rendered("action_params", &params).map(|()| params));
            let outcome =
                outcome.map_err(|e| format!("rule {}: {e}", rule.rule_ref)).map(|params| self.admit(cached, params));
            out.push(Matched { tenant_id, rule: cached.clone(), event_id: event.id, outcome });
        }
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
            secret_names: &row.secret_params,
            timeout_seconds: row.timeout_seconds,
            retry: row.retry.as_ref(),
        };
        let mut admission = admit(&self.ctx, &terms, Ok(params.clone()));
        if admission.status == ExecutionStatus::Failed {
            // Keep what the rule rendered (secrets sealed) next to the reason.
            let (masked, sealed) = seal_secrets(&self.ctx.keys.encryption_key, &params, &row.secret_params);
            admission.parameters = masked;
            admission.secret_params = sealed;
        }
        admission
    }

    async fn write(&self, tx: &mut PgConnection, events: &[EventRow], matched: &[Matched]) -> Result<(), sqlx::Error> {
        let c = MatchColumns::of(events, matched);
        sqlx::query_file!(
            "../../sql/executor/write_matches.sql",
            &c.tenant_ids,
            &c.rule_ids,
            &c.rule_refs,
            &c.event_ids,
            &c.statuses as &[EnforcementStatus],
            &c.errors as &[Option<String>],
            &c.run_rule_ids,
            &c.run_event_ids,
            &c.action_ids,
            &c.action_refs,
            &c.runner_types as &[RunnerType],
            &c.parameters,
            &c.secret_params as &[Option<Vec<u8>>],
            &c.run_statuses as &[ExecutionStatus],
            &c.results as &[Option<Value>],
            &c.max_attempts,
            &c.timeout_seconds,
            &c.processed,
        )
        .execute(&mut *tx)
        .await?;
        for m in matched {
            if let Err(error) = &m.outcome {
                tracing::warn!(rule = %m.rule.row.rule_ref, event = m.event_id, error = error.as_str(), "enforcement failed");
            }
        }
        Ok(())
    }
}
