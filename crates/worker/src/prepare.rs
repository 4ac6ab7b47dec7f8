//! A claimed row becomes a [`Job`]: its secret parameters unsealed, the action's declared
//! datastore secrets decrypted, its `context.api_token` issued and its cancel switch
//! registered.

use std::path::PathBuf;
use std::time::Duration;

use attune_core::execution::unseal_parameters;
use attune_core::{datastore, Context, Shutdown};
use serde_json::{Map, Value};

use crate::attempts::StartedTx;
use crate::cancel_watch::Cancels;
use crate::claim::Claimed;
use crate::runners::Job;

/// The jobs of `claimed`. The rows are committed `running`: every one becomes a job, and
/// a job that cannot be prepared fails with the reason rather than vanishing. Only actions
/// that declare datastore secrets cost a query (one each).
pub async fn jobs(ctx: &Context, cancels: &Cancels, started: &StartedTx, claimed: Vec<Claimed>) -> Vec<Job> {
    let mut jobs = Vec::with_capacity(claimed.len());
    for c in claimed {
        let secrets = if c.secrets.is_empty() {
            Ok(Map::new())
        } else {
            datastore_secrets(ctx, c.tenant_id, &c.secrets)
                .await
                .map_err(|e| format!("cannot read the action's secrets: {e}"))
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
    let (parameters, unsealed) =
        match unseal_parameters(&ctx.keys.encryption_key, &c.parameters, c.secret_params.as_deref()) {
            Ok(p) => (p, Ok(())),
            Err(e) => (c.parameters.clone(), Err(e)),
        };
    let (secrets, unrunnable) = match (secrets, unsealed) {
        (Ok(s), Ok(())) => (s, None),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(execution = c.id, error = %e, "execution cannot run");
            (Map::new(), Some(e))
        }
    };
    let timeout = c.timeout_seconds.map_or(config.worker.default_timeout_seconds, |t| t.max(1) as u64);
    Job {
        execution_id: c.id,
        tenant_id: c.tenant_id,
        action_ref: c.action_ref,
        runner_type: c.runner_type,
        parameters,
        secret_names: c.secret_names,
        secrets,
        attempt: c.attempt,
        timeout: Duration::from_secs(timeout),
        entry_point: c.entry_point,
        command: c.command,
        code: c.code,
        pack_dir: c.pack_path.map(PathBuf::from),
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

/// The action's declared datastore keys, decrypted (missing or expired keys are absent).
async fn datastore_secrets(ctx: &Context, tenant_id: i64, keys: &[String]) -> Result<Map<String, Value>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT key, value, ciphertext, key_version FROM attune.datastore_item
          WHERE tenant_id = $1 AND scope = 'tenant' AND key = ANY($2) AND (expires_at IS NULL OR expires_at > now())",
        tenant_id,
        keys,
    )
    .fetch_all(&ctx.pool)
    .await?;
    let mut out = Map::new();
    for row in rows {
        let value = match row.ciphertext {
            Some(c) => {
                let item = datastore::ItemId { tenant_id, scope: "tenant", owner_id: None, key: &row.key };
                match datastore::open(&ctx.keys.encryption_key, item, &c, row.key_version) {
                    Ok(value) => value,
                    Err(e) => {
                        tracing::error!(key = %row.key, error = %e, "cannot decrypt a datastore secret");
                        continue;
                    }
                }
            }
            None => row.value.unwrap_or(Value::Null),
        };
        out.insert(row.key, value);
    }
    Ok(out)
}
