//! The rule engine: events in, enforcements and executions out.
//!
//! Each round claims a batch of unprocessed events (`FOR UPDATE SKIP LOCKED`, so several
//! engines share the work and never take the same event), matches every enabled rule of
//! each event's trigger, and in the same transaction inserts one enforcement per match,
//! the execution of each, and marks the events processed. The executions are admitted
//! here with the scheduler's own rules ([`crate::scheduler::admit`]): they are inserted
//! `scheduled` (or `failed`, naming the bad parameter), a stage less of latency. A crash anywhere
//! before the commit leaves the events unprocessed for the next round; the unique
//! (rule, event) constraint makes a second enforcement impossible anyway.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use attune_core::domain::{templates, ParamSchema};
use attune_core::execution::seal_secrets;
use attune_core::wakeup::{Hint, Wakeup};
use attune_core::{Context, Shutdown};
use minijinja::Environment;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::scheduler::{admit, ActionTerms, Admission};

/// Events claimed per round. Large enough to amortise the round trips at thousands of
/// events per second, small enough to keep each transaction short.
pub const BATCH: i64 = 500;
/// Polling fallback for a missed NOTIFY.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, sqlx::FromRow)]
struct RuleRow {
    id: i64,
    tenant_id: Option<i64>,
    #[sqlx(rename = "ref")]
    rule_ref: String,
    trigger_id: i64,
    criteria: Option<String>,
    action_params: Value,
    action_id: i64,
    action_ref: String,
    runner_type: String,
    secret_params: Vec<String>,
    param_schema: Value,
    timeout_seconds: Option<i32>,
    retry: Option<Value>,
    /// `param_schema` parsed once per cache load.
    #[sqlx(skip)]
    schema: Option<Result<ParamSchema, String>>,
}

#[derive(Debug, sqlx::FromRow)]
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
    by_trigger: HashMap<i64, Vec<Arc<RuleRow>>>,
}

impl RuleCache {
    /// Reloads when the definitions moved since the last load.
    async fn refresh(&mut self, conn: &mut PgConnection, version: i64) -> Result<(), sqlx::Error> {
        if self.version == Some(version) {
            return Ok(());
        }
        let rows: Vec<RuleRow> =
            sqlx::query_as(include_str!("../../../sql/executor/enabled_rules.sql")).fetch_all(&mut *conn).await?;
        self.by_trigger.clear();
        for mut row in rows {
            row.schema = Some(ParamSchema::parse(&row.param_schema));
            self.by_trigger.entry(row.trigger_id).or_default().push(Arc::new(row));
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
    rule: Arc<RuleRow>,
    event_id: i64,
    /// The admitted execution, or the template error that failed the enforcement.
    outcome: Result<Admission, String>,
}

impl RuleEngine {
    pub fn new(ctx: Context) -> RuleEngine {
        RuleEngine { ctx, env: templates::environment(), cache: RuleCache::default(), scheduled: None }
    }

    pub async fn run(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        self.scheduled = Some(Hint::spawn(self.ctx.pool.clone(), "attune_scheduled", shutdown.clone()));
        let wakeup = Wakeup::listen(&self.ctx.pool, &["attune_event", "attune_rule"], shutdown.clone()).await?;
        while !shutdown.is_cancelled() {
            match self.round().await {
                // A full batch: there is probably more right away.
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "rule engine round failed; the events stay claimable");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            wakeup.wait(POLL, &shutdown).await;
        }
        Ok(())
    }

    /// Claims and processes one batch; returns how many events it took.
    pub async fn round(&mut self) -> Result<usize, sqlx::Error> {
        let mut tx = self.ctx.pool.begin().await?;
        let events: Vec<EventRow> = sqlx::query_as(include_str!("../../../sql/executor/claim_events.sql"))
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
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
        if matched.iter().any(|m| m.outcome.as_ref().is_ok_and(|a| a.status == "scheduled")) {
            if let Some(hint) = &self.scheduled {
                hint.poke();
            }
        }
        Ok(events.len())
    }

    fn match_event(&self, event: &EventRow, out: &mut Vec<Matched>) {
        let Some(rules) = event.trigger_id.and_then(|t| self.cache.by_trigger.get(&t)) else { return };
        let context = json!({
            "trigger": {"data": event.payload, "ref": event.trigger_ref},
            "event": {"data": event.payload, "id": event.id, "trigger": event.trigger_ref},
        });
        for rule in rules {
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
                outcome.map_err(|e| format!("rule {}: {e}", rule.rule_ref)).map(|params| self.admit(rule, params));
            out.push(Matched { tenant_id, rule: rule.clone(), event_id: event.id, outcome });
        }
    }

    /// The scheduler's admission, done here for rule-created executions: they are
    /// inserted already `scheduled` (or `failed`, naming the bad parameter), which saves a
    /// whole stage of latency. The scheduler still admits manual runs.
    fn admit(&self, rule: &RuleRow, params: Value) -> Admission {
        let terms = ActionTerms {
            action_ref: &rule.action_ref,
            runner_type: &rule.runner_type,
            // Rules of disabled actions are not in the cache.
            enabled: true,
            schema: rule.schema.as_ref(),
            secret_names: &rule.secret_params,
            timeout_seconds: rule.timeout_seconds,
            retry: rule.retry.as_ref(),
        };
        let mut admission = admit(&self.ctx, &terms, Ok(params.clone()));
        if admission.status == "failed" {
            // Keep what the rule rendered (secrets sealed) next to the reason.
            let (masked, sealed) = seal_secrets(&self.ctx.keys.encryption_key, &params, &rule.secret_params);
            admission.parameters = masked;
            admission.secret_params = sealed;
        }
        admission
    }

    async fn write(&self, tx: &mut PgConnection, events: &[EventRow], matched: &[Matched]) -> Result<(), sqlx::Error> {
        let runs: Vec<(&Matched, &Admission)> =
            matched.iter().filter_map(|m| Some((m, m.outcome.as_ref().ok()?))).collect();
        sqlx::query(include_str!("../../../sql/executor/write_matches.sql"))
            .bind(matched.iter().map(|m| m.tenant_id).collect::<Vec<_>>())
            .bind(matched.iter().map(|m| m.rule.id).collect::<Vec<_>>())
            .bind(matched.iter().map(|m| m.rule.rule_ref.clone()).collect::<Vec<_>>())
            .bind(matched.iter().map(|m| m.event_id).collect::<Vec<_>>())
            .bind(matched.iter().map(|m| if m.outcome.is_ok() { "processed" } else { "failed" }).collect::<Vec<_>>())
            .bind(matched.iter().map(|m| m.outcome.as_ref().err().cloned()).collect::<Vec<_>>())
            .bind(runs.iter().map(|(m, _)| m.rule.id).collect::<Vec<_>>())
            .bind(runs.iter().map(|(m, _)| m.event_id).collect::<Vec<_>>())
            .bind(runs.iter().map(|(m, _)| m.rule.action_id).collect::<Vec<_>>())
            .bind(runs.iter().map(|(m, _)| m.rule.action_ref.clone()).collect::<Vec<_>>())
            .bind(runs.iter().map(|(m, _)| m.rule.runner_type.clone()).collect::<Vec<_>>())
            .bind(runs.iter().map(|(_, a)| a.parameters.clone()).collect::<Vec<_>>())
            .bind(runs.iter().map(|(_, a)| a.secret_params.clone()).collect::<Vec<_>>())
            .bind(runs.iter().map(|(_, a)| a.status).collect::<Vec<_>>())
            .bind(runs.iter().map(|(_, a)| a.result.clone()).collect::<Vec<_>>())
            .bind(runs.iter().map(|(_, a)| a.max_attempts).collect::<Vec<_>>())
            .bind(runs.iter().map(|(_, a)| a.timeout_seconds).collect::<Vec<_>>())
            .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        for m in matched.iter().filter(|m| m.outcome.is_err()) {
            tracing::warn!(rule = %m.rule.rule_ref, event = m.event_id, error = m.outcome.as_ref().err().map(String::as_str), "enforcement failed");
        }
        Ok(())
    }
}
