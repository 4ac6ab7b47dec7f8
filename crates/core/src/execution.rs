//! Creating executions: shared by the rule engine (batches) and manual runs (one).
//! Secret parameters are sealed before they are stored; `parameters` keeps them masked.

use serde_json::{Map, Value};
use sqlx::PgConnection;

use crate::crypto;

pub const MASK: &str = "********";

/// An execution to create in `requested`.
#[derive(Debug, Clone)]
pub struct NewExecution {
    pub tenant_id: i64,
    pub action_id: i64,
    pub action_ref: String,
    pub runner_type: String,
    /// Plain parameters; the names in `secret_names` are sealed and masked on insert.
    pub parameters: Value,
    pub secret_names: Vec<String>,
    pub enforcement_id: Option<i64>,
    pub rule_id: Option<i64>,
    pub rule_ref: Option<String>,
    pub requested_by: Option<i64>,
    pub parent_id: Option<i64>,
}

/// Splits the secret parameters out: (masked parameters, sealed secrets if any).
pub fn seal_secrets(key: &[u8; 32], parameters: &Value, secret_names: &[String]) -> (Value, Option<Vec<u8>>) {
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
    let sealed = crypto::encrypt(key, &serde_json::to_vec(&Value::Object(secrets)).expect("JSON serialises"));
    (Value::Object(masked), Some(sealed))
}

/// The plain parameters: masked ones restored from the sealed secrets.
pub fn unseal_parameters(key: &[u8; 32], parameters: &Value, sealed: Option<&[u8]>) -> Result<Value, String> {
    let mut out = parameters.clone();
    let Some(sealed) = sealed else { return Ok(out) };
    let plain = crypto::decrypt(key, sealed).map_err(|e| format!("secret parameters: {e}"))?;
    let secrets: Map<String, Value> = serde_json::from_slice(&plain).map_err(|e| format!("secret parameters: {e}"))?;
    if let Value::Object(map) = &mut out {
        map.extend(secrets);
    }
    Ok(out)
}

/// Inserts `rows` in one statement; returns their ids in order.
pub async fn insert(conn: &mut PgConnection, key: &[u8; 32], rows: &[NewExecution]) -> Result<Vec<i64>, sqlx::Error> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (params, sealed): (Vec<Value>, Vec<Option<Vec<u8>>>) =
        rows.iter().map(|r| seal_secrets(key, &r.parameters, &r.secret_names)).unzip();
    sqlx::query_scalar(include_str!("../../../sql/execution/insert.sql"))
        .bind(rows.iter().map(|r| r.tenant_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.action_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.action_ref.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.runner_type.clone()).collect::<Vec<_>>())
        .bind(params)
        .bind(sealed)
        .bind(rows.iter().map(|r| r.enforcement_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.rule_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.rule_ref.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.requested_by).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.parent_id).collect::<Vec<_>>())
        .fetch_all(conn)
        .await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn secrets_are_sealed_and_masked() {
        let key = [1u8; 32];
        let params = json!({"url": "http://x", "token": "hunter2"});
        let (masked, sealed) = super::seal_secrets(&key, &params, &["token".to_string()]);
        assert_eq!(masked, json!({"url": "http://x", "token": "********"}));
        let sealed = sealed.unwrap();
        assert_eq!(super::unseal_parameters(&key, &masked, Some(&sealed)).unwrap(), params);
        let (same, none) = super::seal_secrets(&key, &json!({"url": 1}), &["token".to_string()]);
        assert_eq!((same, none), (json!({"url": 1}), None));
    }
}
