//! Writing a batch's outcome: every match's enforcement, the admitted execution of each
//! processed one and the events marked processed, in one statement (`write_matches.sql`).

use std::sync::Arc;

use attune_core::admission::Admission;
use attune_core::domain::{EnforcementStatus, ExecutionStatus, RunnerType};
use serde_json::Value;
use sqlx::PgConnection;

use super::cache::Rule;
use super::EventRow;

/// One (rule, event) match and what it produced.
pub(super) struct Matched {
    pub tenant_id: i64,
    pub rule: Arc<Rule>,
    pub event_id: i64,
    /// The admitted execution, or the template error that failed the enforcement.
    pub outcome: Result<Admission, String>,
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

/// Writes the batch: enforcements, executions, audit entries, events processed.
pub(super) async fn write(tx: &mut PgConnection, events: &[EventRow], matched: &[Matched]) -> Result<(), sqlx::Error> {
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
