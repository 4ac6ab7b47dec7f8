//! A claimed row becomes a [`Job`]: its secret parameters unsealed, the action's declared
//! datastore secrets decrypted, the masker of all those values built (for its output),
//! its `context.api_token` issued and its cancel switch registered.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use attune_core::datastore::{load_for_templates, TemplateItems};
use attune_core::domain::templates::DatastoreReads;
use attune_core::execution::unseal_secrets;
use attune_core::{Context, Shutdown};
use serde_json::{Map, Value};

use crate::attempts::StartedTx;
use crate::cancel_watch::Cancels;
use crate::claim::Claimed;
use crate::masking::Masker;
use crate::runners::Job;

/// The jobs of `claimed`. The rows are committed `running`: every one becomes a job, and
/// a job that cannot be prepared fails with the reason rather than vanishing. The datastore
/// secrets the claimed actions declare are read in one query for the whole claim (none
/// when no action declares any), by the loader rule templates use.
pub async fn jobs(ctx: &Context, cancels: &Cancels, started: &StartedTx, claimed: Vec<Claimed>) -> Vec<Job> {
    let declared = declared_secrets(ctx, &claimed).await;
    let mut jobs = Vec::with_capacity(claimed.len());
    for c in claimed {
        let secrets = match (&declared, c.secrets.is_empty()) {
            (_, true) => Ok(Map::new()),
            (Ok(items), false) => Ok(pick(items.get(&c.tenant_id), &c.secrets)),
            (Err(e), false) => Err(format!("cannot read the action's secrets: {e}")),
        };
        jobs.push(job(ctx, cancels, started, c, secrets));
    }
    jobs
}

fn job(
    ctx: &Context,
    cancels: &Cancels,
    started: &StartedTx,
    c: Claimed,
    secrets: Result<Map<String, Value>, String>,
) -> Job {
    let config = &ctx.config;
    let (sealed, unsealed) = match unseal_secrets(&ctx.keys.encryption, c.secret_params.as_deref()) {
        Ok(sealed) => (sealed, Ok(())),
        Err(e) => (Map::new(), Err(e)),
    };
    let parameters = with_sealed(&c.parameters, &sealed);
    let secret_names = secret_names(c.secret_names, &sealed);
    let (secrets, masker, unrunnable) = match (secrets, unsealed) {
        (Ok(s), Ok(())) => match Masker::new(sealed.values().chain(s.values())) {
            Ok(masker) => (s, masker, None),
            Err(e) => cannot_run(c.id, format!("cannot mask the action's secrets in its output: {e}")),
        },
        (Err(e), _) | (_, Err(e)) => cannot_run(c.id, e),
    };
    let timeout = c.timeout_seconds.map_or(config.worker.default_timeout_seconds, |t| t.max(1) as u64);
    Job {
        execution_id: c.id,
        tenant_id: c.tenant_id,
        action_ref: c.action_ref,
        runner_type: c.runner_type,
        parameters,
        secret_names,
        secrets,
        masker,
        attempt: c.attempt,
        timeout: Duration::from_secs(timeout),
        entry_point: c.entry_point,
        command: c.command,
        code: c.code,
        pack_dir: c.pack_path.map(PathBuf::from),
        pack_ref: c.pack_ref,
        pack_version: c.pack_version,
        envs_dir: config.data_dir.join("envs"),
        http: c.http,
        container: c.container,
        api_url: config.public_url(),
        max_output_bytes: config.worker.max_output_bytes,
        // Valid while the execution may run (its timeout, and a minute to spare).
        api_token: ctx.tokens.issue_execution_token(c.tenant_id, c.id, timeout as i64 + 60),
        unrunnable,
        cancel: {
            let token = Shutdown::new();
            cancels.lock().expect("cancels lock").insert(c.id, token.clone());
            token
        },
        started: Some(started.clone()),
        network: c.network,
        sandbox: config.sandbox.clone(),
    }
}

/// What a job that cannot run gets instead of its secrets: none, and the reason.
fn cannot_run(execution: i64, reason: String) -> (Map<String, Value>, Masker, Option<String>) {
    tracing::error!(execution, error = %reason, "execution cannot run");
    (Map::new(), Masker::default(), Some(reason))
}

/// The plain parameters: the masked ones restored from the sealed secrets.
fn with_sealed(parameters: &Value, sealed: &Map<String, Value>) -> Value {
    let mut out = parameters.clone();
    if let Value::Object(map) = &mut out {
        map.extend(sealed.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

/// The names kept out of the environment: the action's secret parameters and every
/// parameter the execution sealed (a rule may seal parameters the action does not call
/// secret, those that take a datastore secret).
fn secret_names(mut declared: Vec<String>, sealed: &Map<String, Value>) -> Vec<String> {
    for name in sealed.keys() {
        if !declared.contains(name) {
            declared.push(name.clone());
        }
    }
    declared
}

/// The datastore items the claimed actions declare in `secrets`, decrypted, by tenant
/// (missing and expired keys are absent; one that cannot be decrypted is logged and absent).
async fn declared_secrets(ctx: &Context, claimed: &[Claimed]) -> Result<HashMap<i64, TemplateItems>, sqlx::Error> {
    let mut wanted: HashMap<i64, DatastoreReads> = HashMap::new();
    for c in claimed.iter().filter(|c| !c.secrets.is_empty()) {
        wanted.entry(c.tenant_id).or_default().secret.keys.extend(c.secrets.iter().cloned());
    }
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let mut conn = ctx.pool.acquire().await?;
    let items = load_for_templates(&mut conn, &ctx.keys.encryption, &wanted).await?;
    for (tenant, t) in &items {
        for (key, error) in &t.unreadable {
            tracing::error!(tenant, key = %key, error = %error, "cannot decrypt a datastore secret");
        }
    }
    Ok(items)
}

/// An action's declared secrets out of its tenant's decrypted items.
fn pick(items: Option<&TemplateItems>, keys: &[String]) -> Map<String, Value> {
    let Some(items) = items else { return Map::new() };
    keys.iter().filter_map(|k| items.secret.get(k).map(|v| (k.clone(), v.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sealed_parameters_are_restored_and_all_kept_out_of_the_environment() {
        let sealed = json!({"token": "t0k", "header": "Bearer t0k"});
        let sealed = sealed.as_object().unwrap();
        let params = with_sealed(&json!({"url": "u", "token": "********", "header": "********"}), sealed);
        assert_eq!(params, json!({"url": "u", "token": "t0k", "header": "Bearer t0k"}));
        assert_eq!(secret_names(vec!["token".into(), "other".into()], sealed), ["token", "other", "header"]);
    }
}
