//! `attune rule list|show|enable|disable`.

use clap::Subcommand;
use serde_json::{json, Value};

use super::{definition, id_of, Paging};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum RuleCommand {
    /// List the rules you can see.
    List {
        /// Only this pack's.
        #[arg(long)]
        pack: Option<String>,
        /// Only those on this trigger.
        #[arg(long)]
        trigger: Option<String>,
        /// Only those running this action.
        #[arg(long)]
        action: Option<String>,
        /// Only enabled (true) or disabled (false) ones.
        #[arg(long)]
        enabled: Option<bool>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a rule: its trigger, criteria, action and parameters.
    Show { rule: String },
    /// Enable a rule: its trigger's events run its action again.
    Enable { rule: String },
    /// Disable a rule: its trigger's events no longer run its action.
    Disable { rule: String },
}

pub const RULE_COLUMNS: &[Column] = &[
    col("REF", |r| output::text(&r["ref"])),
    col("TRIGGER", |r| output::text(&r["trigger"])),
    col("ACTION", |r| output::text(&r["action"])),
    col("ENABLED", |r| output::yes_no(&r["enabled"])),
    col("DESCRIPTION", |r| output::short(&r["description"], 60)),
];

pub async fn run(command: RuleCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        RuleCommand::List { pack, trigger, action, enabled, paging } => {
            let mut query = paging.query();
            for (key, value) in
                [("pack", pack), ("trigger", trigger), ("action", action), ("enabled", enabled.map(|e| e.to_string()))]
            {
                if let Some(v) = value {
                    query.push((key, v));
                }
            }
            let page = api.list("/api/v1/rules", &query).await?;
            out.list(&page.items, RULE_COLUMNS, Some(page.total));
        }
        RuleCommand::Show { rule } => show(&out, &definition(&api, "rule", &rule).await?),
        RuleCommand::Enable { rule } => set_enabled(&api, &out, &rule, true).await?,
        RuleCommand::Disable { rule } => set_enabled(&api, &out, &rule, false).await?,
    }
    Ok(())
}

async fn set_enabled(api: &Api, out: &Out, rule: &str, enabled: bool) -> Result<(), CliError> {
    let found = definition(api, "rule", rule).await?;
    let changed = api.patch(&format!("/api/v1/rules/{}", id_of(&found)?), json!({"enabled": enabled})).await?;
    if out.machine() {
        out.data(&changed);
    } else {
        println!("Rule {} is {}", output::text(&changed["ref"]), if enabled { "enabled" } else { "disabled" });
    }
    Ok(())
}

fn show(out: &Out, rule: &Value) {
    let mut fields = vec![
        ("ref", output::text(&rule["ref"])),
        ("description", output::text(&rule["description"])),
        ("trigger", output::text(&rule["trigger"])),
        ("criteria", output::text(&rule["criteria"])),
        ("action", output::text(&rule["action"])),
        ("parameters", serde_json::to_string_pretty(&rule["action_params"]).unwrap_or_default()),
        ("enabled", output::yes_no(&rule["enabled"])),
    ];
    if rule["notify_on_trigger"] == json!(true) {
        fields.push(("notify", "yes (rule.triggered on the stream)".into()));
    }
    fields.push(("updated", output::time(&rule["updated_at"])));
    out.record(rule, &fields);
}
