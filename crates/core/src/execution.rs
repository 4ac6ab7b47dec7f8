//! Creating executions (manual runs) and moving `requested` ones on once admitted.
//! Secret parameters are sealed before they are stored; `parameters` keeps them masked.

use serde_json::{Map, Value};
use sqlx::PgConnection;

use crate::domain::{ExecutionStatus, RunnerType};
use crate::keyring::Keyring;

pub const MASK: &str = "********";

/// An execution to create in `requested`, its parameters admitted
/// ([`crate::admission::admit`]): defaults applied, secret ones masked and sealed.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub tenant_id: i64,
    pub action_id: i64,
    pub action_ref: String,
    pub runner_type: RunnerType,
    /// Secret parameters masked.
    pub parameters: Value,
    /// The secret parameters, sealed.
    pub secret_params: Option<Vec<u8>>,
    pub enforcement_id: Option<i64>,
    pub rule_id: Option<i64>,
    pub rule_ref: Option<String>,
    pub requested_by: Option<i64>,
    pub parent_id: Option<i64>,
}

/// Splits the secret parameters out: (masked parameters, sealed secrets if any).
pub fn seal_secrets(keys: &Keyring, parameters: &Value, secret_names: &[String]) -> (Value, Option<Vec<u8>>) {
    let Value::Object(map) = parameters else { return (parameters.clone(), None) };
    let mut masked = map.clone();
    let mut secrets = Map::new();
    for name in secret_names {
        if let Some(v) = masked.get_mut(name) {
            secrets.insert(name.clone(), std::mem::replace(v, Value::String(MASK.into())));
        }
    }
    if secrets.is_empty() {
        return (Value::Object(masked), None);
    }
    let sealed = keys.seal_tagged(&serde_json::to_vec(&Value::Object(secrets)).expect("JSON serialises"));
    (Value::Object(masked), Some(sealed))
}

/// The secret parameters (name → value) of a sealed blob; none when there is none.
pub fn unseal_secrets(keys: &Keyring, sealed: Option<&[u8]>) -> Result<Map<String, Value>, String> {
    let Some(sealed) = sealed else { return Ok(Map::new()) };
    let plain = keys.open_tagged(sealed).map_err(|e| format!("secret parameters: {e}"))?;
    serde_json::from_slice(&plain).map_err(|e| format!("secret parameters: {e}"))
}

/// The plain parameters: masked ones restored from the sealed secrets.
pub fn unseal_parameters(keys: &Keyring, parameters: &Value, sealed: Option<&[u8]>) -> Result<Value, String> {
    let mut out = parameters.clone();
    let secrets = unseal_secrets(keys, sealed)?;
    if let Value::Object(map) = &mut out {
        map.extend(secrets);
    }
    Ok(out)
}

/// The admission of a `requested` execution ([`crate::admission::admit`]), to record with
/// [`schedule`].
#[derive(Debug, Clone)]
pub struct Decision {
    pub id: i64,
    /// `scheduled` or `failed`.
    pub status: ExecutionStatus,
    /// Defaults applied, secret ones masked (a failed one keeps what it was given).
    pub parameters: Value,
    pub secret_params: Option<Vec<u8>>,
    /// The failure (`error`, `failure_reason`) when `failed`.
    pub result: Option<Value>,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
}

/// Moves `requested` executions on as decided — `scheduled` (for the workers) or `failed`
/// — with their audit entries (`execution.scheduled`/`execution.failed`, actor `service`)
/// and change-log rows, in one statement (`sql/execution/schedule.sql`). The caller wakes
/// the workers after its commit.
pub async fn schedule(conn: &mut PgConnection, decisions: &[Decision]) -> Result<(), sqlx::Error> {
    if decisions.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = decisions.iter().map(|d| d.id).collect();
    let statuses: Vec<ExecutionStatus> = decisions.iter().map(|d| d.status).collect();
    let parameters: Vec<Value> = decisions.iter().map(|d| d.parameters.clone()).collect();
    let secret_params: Vec<Option<Vec<u8>>> = decisions.iter().map(|d| d.secret_params.clone()).collect();
    let results: Vec<Option<Value>> = decisions.iter().map(|d| d.result.clone()).collect();
    let max_attempts: Vec<i32> = decisions.iter().map(|d| d.max_attempts).collect();
    let timeout_seconds: Vec<i32> = decisions.iter().map(|d| d.timeout_seconds).collect();
    sqlx::query_file!(
        "../../sql/execution/schedule.sql",
        &ids,
        &statuses as &[ExecutionStatus],
        &parameters,
        &secret_params as &[Option<Vec<u8>>],
        &results as &[Option<Value>],
        &max_attempts,
        &timeout_seconds,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// New executions as the columns of `sql/execution/insert.sql`.
#[derive(Default)]
struct Columns {
    tenant_ids: Vec<i64>,
    action_ids: Vec<i64>,
    action_refs: Vec<String>,
    runner_types: Vec<RunnerType>,
    parameters: Vec<Value>,
    secret_params: Vec<Option<Vec<u8>>>,
    enforcement_ids: Vec<Option<i64>>,
    rule_ids: Vec<Option<i64>>,
    rule_refs: Vec<Option<String>>,
    requested_by: Vec<Option<i64>>,
    parent_ids: Vec<Option<i64>>,
}

impl Columns {
    fn of(rows: &[NewExecution]) -> Columns {
        let mut c = Columns::default();
        for r in rows {
            c.tenant_ids.push(r.tenant_id);
            c.action_ids.push(r.action_id);
            c.action_refs.push(r.action_ref.clone());
            c.runner_types.push(r.runner_type);
            c.parameters.push(r.parameters.clone());
            c.secret_params.push(r.secret_params.clone());
            c.enforcement_ids.push(r.enforcement_id);
            c.rule_ids.push(r.rule_id);
            c.rule_refs.push(r.rule_ref.clone());
            c.requested_by.push(r.requested_by);
            c.parent_ids.push(r.parent_id);
        }
        c
    }
}

/// Inserts `rows` in one statement; returns their ids in order.
pub async fn insert(conn: &mut PgConnection, rows: &[NewExecution]) -> Result<Vec<i64>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let c = Columns::of(rows);
    sqlx::query_file_scalar!(
        "../../sql/execution/insert.sql",
        &c.tenant_ids,
        &c.action_ids,
        &c.action_refs,
        &c.runner_types as &[RunnerType],
        &c.parameters,
        &c.secret_params as &[Option<Vec<u8>>],
        &c.enforcement_ids as &[Option<i64>],
        &c.rule_ids as &[Option<i64>],
        &c.rule_refs as &[Option<String>],
        &c.requested_by as &[Option<i64>],
        &c.parent_ids as &[Option<i64>],
    )
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::keyring::Keyring;

    #[test]
    fn secrets_are_sealed_and_masked() {
        let key = Keyring::single([1u8; 32]);
        let params = json!({"url": "http://x", "token": "hunter2"});
        let (masked, sealed) = super::seal_secrets(&key, &params, &["token".to_string()]);
        assert_eq!(masked, json!({"url": "http://x", "token": "********"}));
        let sealed = sealed.unwrap();
        assert_eq!(super::unseal_parameters(&key, &masked, Some(&sealed)).unwrap(), params);
        let (same, none) = super::seal_secrets(&key, &json!({"url": 1}), &["token".to_string()]);
        assert_eq!((same, none), (json!({"url": 1}), None));
    }
}
