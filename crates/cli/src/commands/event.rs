//! `attune event list`: what triggers received.

use clap::Subcommand;

use super::Paging;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum EventCommand {
    /// List events, newest first.
    List {
        /// Only this trigger's.
        #[arg(long)]
        trigger: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
}

const EVENT_COLUMNS: &[Column] = &[
    col("ID", |e| output::text(&e["id"])),
    col("TRIGGER", |e| output::text(&e["trigger_ref"])),
    col("SOURCE", |e| output::text(&e["source"])),
    col("CREATED", |e| output::time(&e["created_at"])),
    col("MATCHED", |e| if e["processed_at"].is_null() { "pending".into() } else { "yes".into() }),
    col("PAYLOAD", |e| output::short(&e["payload"], 60)),
];

pub async fn run(command: EventCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        EventCommand::List { trigger, paging } => {
            let mut query = paging.query();
            if let Some(t) = trigger {
                query.push(("trigger", t));
            }
            let page = api.list("/api/v1/events", &query).await?;
            out.list(&page.items, EVENT_COLUMNS, Some(page.total));
        }
    }
    Ok(())
}
