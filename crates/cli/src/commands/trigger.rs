//! `attune trigger list|show|fire`.
//!
//! `fire` posts a payload to a webhook trigger's `webhook_url` — what an outside system
//! does — signed with `--secret` (`X-Attune-Signature: sha256=<HMAC>`) when the trigger
//! checks signatures. Timer and custom triggers fire on their own (their sensors).

use clap::Subcommand;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{definition, Paging};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum TriggerCommand {
    /// List the triggers you can see.
    List {
        /// Only this pack's.
        #[arg(long)]
        pack: Option<String>,
        /// Only this type's (webhook, timer.interval, timer.cron, timer.date, custom).
        #[arg(long = "type", value_name = "TYPE")]
        trigger_type: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a trigger (a webhook trigger's URL included).
    Show { trigger: String },
    /// Send an event to a webhook trigger, as an outside system would.
    Fire {
        trigger: String,
        /// The payload, a JSON document (default: {}).
        #[arg(long, value_name = "JSON", default_value = "{}")]
        data: String,
        /// The trigger's webhook_secret, to sign the payload (for triggers that check
        /// signatures).
        #[arg(long, env = "ATTUNE_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
    },
}

pub const TRIGGER_COLUMNS: &[Column] = &[
    col("REF", |t| output::text(&t["ref"])),
    col("TYPE", |t| output::text(&t["type"])),
    col("ENABLED", |t| output::yes_no(&t["enabled"])),
    col("WEBHOOK URL / DESCRIPTION", |t| match t["webhook_url"].as_str() {
        Some(url) => url.to_string(),
        None => output::short(&t["description"], 60),
    }),
];

pub async fn run(command: TriggerCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        TriggerCommand::List { pack, trigger_type, paging } => {
            let mut query = paging.query();
            if let Some(p) = pack {
                query.push(("pack", p));
            }
            if let Some(t) = trigger_type {
                query.push(("type", t));
            }
            let page = api.list("/api/v1/triggers", &query).await?;
            out.list(&page.items, TRIGGER_COLUMNS, Some(page.total));
        }
        TriggerCommand::Show { trigger } => {
            let t = definition(&api, "trigger", &trigger).await?;
            let mut fields = vec![
                ("ref", output::text(&t["ref"])),
                ("type", output::text(&t["type"])),
                ("description", output::text(&t["description"])),
                ("enabled", output::yes_no(&t["enabled"])),
            ];
            if let Some(url) = t["webhook_url"].as_str() {
                fields.push(("webhook url", url.to_string()));
                fields.push(("signed", output::yes_no(&t["webhook_signed"])));
            }
            if t["parameters"].as_object().is_some_and(|p| !p.is_empty()) {
                fields.push(("parameters", output::text(&t["parameters"])));
            }
            if !t["payload_schema"].is_null() {
                fields.push(("payload schema", output::text(&t["payload_schema"])));
            }
            out.record(&t, &fields);
        }
        TriggerCommand::Fire { trigger, data, secret } => {
            let payload: Value = serde_json::from_str(&data).map_err(|e| {
                CliError::usage(format!("--data is not JSON ({e}): give e.g. --data '{{\"status\": \"critical\"}}'"))
            })?;
            let t = definition(&api, "trigger", &trigger).await?;
            let Some(url) = t["webhook_url"].as_str() else {
                return Err(CliError::usage(format!(
                    "trigger {} is a {} trigger: only webhook triggers can be fired from outside (the others fire on their own)",
                    output::text(&t["ref"]),
                    output::text(&t["type"])
                )));
            };
            let body = serde_json::to_vec(&payload).expect("JSON serialises");
            let mut headers = Vec::new();
            if let Some(secret) = secret {
                headers.push(("x-attune-signature", format!("sha256={}", sign(secret.as_bytes(), &body))));
            } else if t["webhook_signed"] == Value::Bool(true) {
                return Err(CliError::usage(format!(
                    "trigger {} checks signatures: give its webhook_secret with --secret (or ATTUNE_WEBHOOK_SECRET)",
                    output::text(&t["ref"])
                )));
            }
            let answer = api.post_url(url, body, &headers).await?;
            if out.machine() {
                out.data(&answer);
            } else {
                println!(
                    "Event {} created on {}: `attune execution list --since 1m` shows what its rules ran",
                    output::text(&answer["event_id"]),
                    output::text(&t["ref"])
                );
            }
        }
    }
    Ok(())
}

/// Hex HMAC-SHA256 of `body` keyed with `secret`.
fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_matches_openssl() {
        // printf '{}' | openssl dgst -sha256 -hmac s3cret
        assert_eq!(super::sign(b"s3cret", b"{}"), "adbde1ce40c89c14215687d5d762a47df6dfaefcfad61e2e86718ffc8498571b");
    }
}
