//! `attune audit list`: the audit log of your tenant (admins).

use clap::Subcommand;

use super::Paging;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// List audit entries, newest first.
    List {
        /// Only about this kind of entity (execution, rule, pack, user, datastore, ...).
        #[arg(long)]
        entity_type: Option<String>,
        /// Only about this entity (with --entity-type).
        #[arg(long)]
        entity_id: Option<String>,
        /// Only this action (execution.failed, rule.updated, ...).
        #[arg(long)]
        action: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
}

const AUDIT_COLUMNS: &[Column] = &[
    col("ID", |a| output::text(&a["id"])),
    col("TIME", |a| output::time(&a["timestamp"])),
    col("ACTOR", |a| {
        let actor = &a["actor"];
        match actor["login"].as_str() {
            Some(login) => format!("{} {login}", output::text(&actor["type"])),
            None => output::text(&actor["type"]),
        }
    }),
    col("ACTION", |a| output::text(&a["action"])),
    col("ENTITY", |a| {
        format!("{} {}", output::text(&a["entity_type"]), output::text(&a["entity_id"])).trim().to_string()
    }),
    col("DATA", |a| output::short(&a["data"], 60)),
];

pub async fn run(command: AuditCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        AuditCommand::List { entity_type, entity_id, action, paging } => {
            let mut query = paging.query();
            for (key, value) in [("entity_type", entity_type), ("entity_id", entity_id), ("action", action)] {
                if let Some(v) = value {
                    query.push((key, v));
                }
            }
            let page = api.list("/api/v1/audit", &query).await?;
            out.list(&page.items, AUDIT_COLUMNS, Some(page.total));
        }
    }
    Ok(())
}
