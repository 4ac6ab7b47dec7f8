//! Creating executions (manual runs, admitted at once) and moving `requested` ones on once
//! admitted.
//! Secret parameters are sealed before they are stored; `parameters` keeps them masked.

use serde_json::{Map, Value};
use sqlx::PgConnection;

use crate::audit::Actor;
use crate::domain::{ExecutionStatus, RunnerType};
use crate::handoff::{Claimed, Reservation};
use crate::keyring::Keyring;

pub const MASK: &str = "********";

/// A manual run to create: its action, its parameters admitted
/// ([`crate::admission::admit`]: defaults applied, secret ones masked and sealed), its
/// attempts and timeout as admitted, who asked.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub tenant_id: i64,
    pub action_id: i64,
    pub action_ref: String,
    pub runner_type: RunnerType,
    /// Secret parameters masked.
    pub parameters: Value,
    /// The secret parameters, sealed.
    pub secret_params: Option<Vec<u8>>,
    pub max_attempts: i32,
    pub timeout_seconds: i32,
    /// None for an execution's own token (no identity behind it).
    pub requested_by: Option<i64>,
    /// The `execution.requested` audit entry's actor.
    pub actor: Actor,
}

/// A manual run as created.
#[derive(Debug)]
pub struct Created {
    pub id: i64,
    pub parameters: Value,
    pub attempt: i32,
    pub max_attempts: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Created `running` on the reservation's worker: what the lane needs to run it.
    pub handed: Option<Claimed>,
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
pub async fn schedule(conn: &mut PgConnection, decisions: Vec<Decision>) -> Result<(), sqlx::Error> {
    if decisions.is_empty() {
        return Ok(());
    }
    let n = decisions.len();
    let (mut ids, mut statuses, mut parameters) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut secret_params, mut results) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut max_attempts, mut timeout_seconds) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for d in decisions {
        ids.push(d.id);
        statuses.push(d.status);
        parameters.push(d.parameters);
        secret_params.push(d.secret_params);
        results.push(d.result);
        max_attempts.push(d.max_attempts);
        timeout_seconds.push(d.timeout_seconds);
    }
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

/// Creates an admitted manual run `scheduled`, with the change-log rows and audit entries of
/// its creation (`requested`) and its scheduling, in one statement
/// (`sql/execution/run.sql`). The caller wakes the workers after its commit.
/// `definitions`: the `attune.definition_version` the action was read at, when it was read
/// before this transaction; then nothing is created (`None`) if it has moved since.
/// `here`: a slot kept in a lane of this process ([`crate::handoff`]); the run is created
/// `running` on its worker when that worker is active and would claim it
/// ([`Created::handed`]), and the caller hands it on after its commit.
pub async fn create_run(
    conn: &mut PgConnection,
    run: &NewRun,
    definitions: Option<i64>,
    here: Option<&Reservation>,
) -> Result<Option<Created>, sqlx::Error> {
    let row = sqlx::query_file!(
        "../../sql/execution/run.sql",
        run.tenant_id,
        run.action_id,
        run.action_ref,
        run.runner_type as RunnerType,
        run.parameters,
        run.secret_params.as_deref(),
        run.requested_by,
        run.actor.kind.as_str(),
        run.actor.id.as_deref(),
        run.actor.login.as_deref(),
        run.max_attempts,
        run.timeout_seconds,
        definitions,
        here.map(|r| r.worker_id),
        here.map(|r| &*r.worker_name),
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| Created {
        id: row.id,
        parameters: row.parameters.clone(),
        attempt: row.attempt,
        max_attempts: row.max_attempts,
        created_at: row.created_at,
        handed: row.handed.then_some(crate::claimed_from_row!(row)),
    }))
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
