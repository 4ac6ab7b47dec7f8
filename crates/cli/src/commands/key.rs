//! `attune key get|set|list|delete`: datastore items (docs/datastore.md). Not to be
//! confused with `attune keys`, the server's encryption keys.
//!
//! `get` prints the bare value (a string as it is, anything else as JSON), so
//! `$(attune key get api_url)` works in scripts; `-o json` prints the whole item.

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use super::{segment, Paging};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::Options;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Scope {
    /// Shared by your tenant (default).
    Tenant,
    /// Yours only.
    User,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Tenant => "tenant",
            Scope::User => "user",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Print an item's value (decrypted for editors and admins).
    Get {
        key: String,
        #[arg(long, value_enum, default_value_t = Scope::Tenant)]
        scope: Scope,
    },
    /// Create or replace an item.
    Set {
        key: String,
        /// The value: text, or JSON with --json.
        value: String,
        /// The value is JSON (a number, object, list ...), not text.
        #[arg(long)]
        json: bool,
        /// Store it encrypted (AES-256-GCM under the server's key); viewers and executors
        /// then see "********".
        #[arg(long)]
        encrypt: bool,
        /// Gone after this many seconds.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
        ttl: Option<i64>,
        #[arg(long, value_enum, default_value_t = Scope::Tenant)]
        scope: Scope,
    },
    /// List items in key order (encrypted values as "********" unless --decrypt).
    List {
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// Show encrypted values in clear (editors and admins).
        #[arg(long)]
        decrypt: bool,
        #[arg(long, value_enum, default_value_t = Scope::Tenant)]
        scope: Scope,
        #[command(flatten)]
        paging: Paging,
    },
    /// Delete an item.
    Delete {
        key: String,
        #[arg(long, value_enum, default_value_t = Scope::Tenant)]
        scope: Scope,
    },
}

const KEY_COLUMNS: &[Column] = &[
    col("KEY", |i| output::text(&i["key"])),
    col("VALUE", |i| output::short(&i["value"], 60)),
    col("ENCRYPTED", |i| output::yes_no(&i["encrypted"])),
    col("SCOPE", |i| output::text(&i["scope"])),
    col("EXPIRES", |i| output::time(&i["expires_at"])),
];

pub async fn run(command: KeyCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        KeyCommand::Get { key, scope } => {
            let item = api
                .get(&format!("/api/v1/datastore/{}", segment(&key)), &[("scope", scope.as_str().into())])
                .await
                .map_err(|e| not_found(e, &key, scope))?;
            if out.machine() {
                out.data(&item);
            } else {
                println!("{}", output::text(&item["value"]));
            }
        }
        KeyCommand::Set { key, value, json: is_json, encrypt, ttl, scope } => {
            let value = if is_json {
                serde_json::from_str::<Value>(&value).map_err(|e| {
                    CliError::usage(format!("the value of {key} is not JSON ({e}); leave out --json to store text"))
                })?
            } else {
                Value::String(value)
            };
            let mut body = json!({"key": key, "value": value, "encrypted": encrypt, "scope": scope.as_str()});
            if let Some(ttl) = ttl {
                body["ttl_seconds"] = json!(ttl);
            }
            let item = api.post("/api/v1/datastore", body).await?;
            if out.machine() {
                out.data(&item);
            } else {
                let mut how = vec![scope.as_str().to_string()];
                if encrypt {
                    how.push("encrypted".into());
                }
                if let Some(expires) = item["expires_at"].as_str().map(|_| output::time(&item["expires_at"])) {
                    how.push(format!("expires {expires}"));
                }
                println!("Set {key} ({})", how.join(", "));
            }
        }
        KeyCommand::List { prefix, decrypt, scope, paging } => {
            let mut query = paging.query();
            query.push(("scope", scope.as_str().into()));
            if let Some(p) = prefix {
                query.push(("prefix", p));
            }
            if decrypt {
                query.push(("decrypt", "true".into()));
            }
            let page = api.list("/api/v1/datastore", &query).await?;
            out.list(&page.items, KEY_COLUMNS, Some(page.total));
        }
        KeyCommand::Delete { key, scope } => {
            api.delete(&format!("/api/v1/datastore/{}", segment(&key)), &[("scope", scope.as_str().into())])
                .await
                .map_err(|e| not_found(e, &key, scope))?;
            if out.machine() {
                out.data(&json!({"deleted": key}));
            } else {
                println!("Deleted {key}");
            }
        }
    }
    Ok(())
}

fn not_found(e: CliError, key: &str, scope: Scope) -> CliError {
    match e {
        CliError::Api(f) if f.status == 404 => CliError::Refused(format!(
            "no datastore item {key:?} in the {} scope (or it expired): `attune key list` shows them",
            scope.as_str()
        )),
        other => other,
    }
}
