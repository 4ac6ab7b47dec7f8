//! The rule cache: every enabled rule of an enabled action, by trigger, as of one version of
//! the definitions. What each rule needs beyond its row is worked out once per load: its
//! action's parsed schema, what its templates read of the datastore, and which of its
//! parameters are secret. Datastore *values* are never cached: they are read per batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use attune_core::domain::templates::{self, DatastoreReads};
use attune_core::domain::{ParamSchema, RunnerType};
use serde_json::Value;
use sqlx::PgConnection;

/// One row of `enabled_rules.sql`.
#[derive(Debug)]
pub(super) struct RuleRow {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub rule_ref: String,
    pub trigger_id: i64,
    pub criteria: Option<String>,
    pub action_params: Value,
    pub action_id: i64,
    pub action_ref: String,
    pub runner_type: RunnerType,
    pub secret_params: Vec<String>,
    pub param_schema: Value,
    pub timeout_seconds: Option<i32>,
    pub retry: Option<Value>,
}

/// A cached rule: its row and what was worked out of it at load.
#[derive(Debug)]
pub(super) struct Rule {
    pub row: RuleRow,
    /// The action's `param_schema`, parsed.
    pub schema: Result<ParamSchema, String>,
    /// What the criteria read of the datastore.
    pub criteria_reads: DatastoreReads,
    /// What the action parameters read of the datastore.
    pub params_reads: DatastoreReads,
    /// Both: what the batch loads for this rule's tenant.
    pub reads: DatastoreReads,
    /// The action's secret parameters, and the rule's top-level parameters whose templates
    /// read `secret` (their rendered values are sealed like the action's own).
    pub secret_names: Vec<String>,
}

impl Rule {
    fn new(row: RuleRow) -> Rule {
        let schema = ParamSchema::parse(&row.param_schema);
        let criteria_reads = row.criteria.as_deref().map(templates::criteria_reads).unwrap_or_default();
        let params_reads = templates::value_reads(&row.action_params);
        let mut reads = criteria_reads.clone();
        reads.merge(&params_reads);
        let mut secret_names = row.secret_params.clone();
        for name in templates::secret_params(&row.action_params) {
            if !secret_names.contains(&name) {
                secret_names.push(name);
            }
        }
        Rule { row, schema, criteria_reads, params_reads, reads, secret_names }
    }
}

/// Enabled rules by trigger, as of `version` of the definitions.
#[derive(Default)]
pub(super) struct RuleCache {
    version: Option<i64>,
    by_trigger: HashMap<i64, Vec<Arc<Rule>>>,
    /// Triggers with a rule whose templates read the datastore: a batch without their
    /// events loads nothing.
    reading_triggers: HashSet<i64>,
}

impl RuleCache {
    /// Reloads when the definitions moved since the last load.
    pub async fn refresh(&mut self, conn: &mut PgConnection, version: i64) -> Result<(), sqlx::Error> {
        if self.version == Some(version) {
            return Ok(());
        }
        let rows = sqlx::query_file_as!(RuleRow, "../../sql/executor/enabled_rules.sql").fetch_all(&mut *conn).await?;
        self.by_trigger.clear();
        self.reading_triggers.clear();
        for row in rows {
            let rule = Rule::new(row);
            if !rule.reads.is_empty() {
                self.reading_triggers.insert(rule.row.trigger_id);
            }
            self.by_trigger.entry(rule.row.trigger_id).or_default().push(Arc::new(rule));
        }
        self.version = Some(version);
        tracing::debug!(version, "rule cache reloaded");
        Ok(())
    }

    /// The enabled rules of a trigger.
    pub fn rules_of(&self, trigger_id: Option<i64>) -> &[Arc<Rule>] {
        trigger_id.and_then(|t| self.by_trigger.get(&t)).map_or(&[], Vec::as_slice)
    }

    /// Whether some rule of the trigger reads the datastore.
    pub fn reads_datastore(&self, trigger_id: Option<i64>) -> bool {
        trigger_id.is_some_and(|t| self.reading_triggers.contains(&t))
    }
}
