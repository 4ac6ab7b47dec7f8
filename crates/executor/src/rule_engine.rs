//! The rule engine: events in, enforcements and executions out.
//!
//! Each round claims a batch of unprocessed events (`FOR UPDATE SKIP LOCKED`, so several
//! engines share the work and never take the same event), matches every enabled rule of
//! each event's trigger, and in the same transaction inserts one enforcement per match,
//! the `requested` execution of each, and marks the events processed. A crash anywhere
//! before the commit leaves the events unprocessed for the next round; the unique
//! (rule, event) constraint makes a second enforcement impossible anyway.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use attune_core::audit::{self, Actor, Entry};
use attune_core::domain::templates;
use attune_core::execution::{self, NewExecution};
use attune_core::wakeup::Wakeup;
use attune_core::{Context, Shutdown};
use minijinja::Environment;
use serde_json::{json, Value};
use sqlx::PgConnection;

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
}

#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    id: i64,
    tenant_id: Option<i64>,
    trigger_id: Option<i64>,
    trigger_ref: String,
    payload: Value,
}

/// Enabled rules by trigger, as of `version` of the definitions.
#[derive(Default)]
struct RuleCache {
    version: Option<i64>,
    by_trigger: HashMap<i64, Vec<Arc<RuleRow>>>,
}

impl RuleCache {
    /// Reloads when the definitions moved since the last load.
    async fn refresh(&mut self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let version: i64 =
            sqlx::query_scalar("SELECT version FROM attune.definition_version").fetch_one(&mut *conn).await?;
        if self.version == Some(version) {
            return Ok(());
        }
        let rows: Vec<RuleRow> =
            sqlx::query_as(include_str!("../../../sql/executor/enabled_rules.sql")).fetch_all(&mut *conn).await?;
        self.by_trigger.clear();
        for row in rows {
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
}

/// One (rule, event) match and what it produced.
struct Matched {
    tenant_id: i64,
    rule: Arc<RuleRow>,
    event_id: i64,
    /// Rendered parameters, or the error that failed the enforcement.
    outcome: Result<Value, String>,
}

impl RuleEngine {
    pub fn new(ctx: Context) -> RuleEngine {
        RuleEngine { ctx, env: templates::environment(), cache: RuleCache::default() }
    }

    pub async fn run(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
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
        // Read after the claim, so every rule change committed before it is seen.
        self.cache.refresh(&mut tx).await?;

        let mut matched = Vec::new();
        for event in &events {
            self.match_event(event, &mut matched);
        }
        self.write(&mut tx, &events, &matched).await?;
        tx.commit().await?;
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
            .and_then(|()| templates::render_value(&self.env, "action_params", &rule.action_params, &context));
            let outcome = outcome.map_err(|e| format!("rule {}: {e}", rule.rule_ref));
            out.push(Matched { tenant_id, rule: rule.clone(), event_id: event.id, outcome });
        }
    }

    async fn write(&self, tx: &mut PgConnection, events: &[EventRow], matched: &[Matched]) -> Result<(), sqlx::Error> {
        if !matched.is_empty() {
            let enforcement_ids: Vec<i64> =
                sqlx::query_scalar(include_str!("../../../sql/executor/insert_enforcements.sql"))
                    .bind(matched.iter().map(|m| m.tenant_id).collect::<Vec<_>>())
                    .bind(matched.iter().map(|m| m.rule.id).collect::<Vec<_>>())
                    .bind(matched.iter().map(|m| m.rule.rule_ref.clone()).collect::<Vec<_>>())
                    .bind(matched.iter().map(|m| m.event_id).collect::<Vec<_>>())
                    .bind(
                        matched
                            .iter()
                            .map(|m| if m.outcome.is_ok() { "processed" } else { "failed" })
                            .collect::<Vec<_>>(),
                    )
                    .bind(matched.iter().map(|m| m.outcome.as_ref().err().cloned()).collect::<Vec<_>>())
                    .fetch_all(&mut *tx)
                    .await?;
            let new: Vec<NewExecution> = matched
                .iter()
                .zip(&enforcement_ids)
                .filter_map(|(m, enforcement_id)| {
                    let params = m.outcome.as_ref().ok()?;
                    Some(NewExecution {
                        tenant_id: m.tenant_id,
                        action_id: m.rule.action_id,
                        action_ref: m.rule.action_ref.clone(),
                        runner_type: m.rule.runner_type.clone(),
                        parameters: params.clone(),
                        secret_names: m.rule.secret_params.clone(),
                        enforcement_id: Some(*enforcement_id),
                        rule_id: Some(m.rule.id),
                        rule_ref: Some(m.rule.rule_ref.clone()),
                        requested_by: None,
                        parent_id: None,
                    })
                })
                .collect();
            let execution_ids = execution::insert(tx, &self.ctx.keys.encryption_key, &new).await?;
            let entries: Vec<Entry> = new
                .iter()
                .zip(&execution_ids)
                .map(|(n, id)| Entry {
                    tenant_id: Some(n.tenant_id),
                    actor: Actor::service("executor"),
                    action: "execution.requested".into(),
                    entity_type: "execution".into(),
                    entity_id: id.to_string(),
                    data: json!({"action": n.action_ref, "rule": n.rule_ref, "enforcement_id": n.enforcement_id}),
                })
                .collect();
            audit::record(tx, &entries).await?;
            for m in matched.iter().filter(|m| m.outcome.is_err()) {
                tracing::warn!(rule = %m.rule.rule_ref, event = m.event_id, error = m.outcome.as_ref().err().map(String::as_str), "enforcement failed");
            }
        }
        sqlx::query("UPDATE attune.event SET processed_at = clock_timestamp() WHERE id = ANY($1)")
            .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
