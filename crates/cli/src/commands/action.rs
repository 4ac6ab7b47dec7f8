//! `attune action list|show|run`.
//!
//! `run REF key=value ...` types each value by the action's parameter schema
//! ([`crate::params`]), creates the execution, and with `--wait` (quietly) or `--watch`
//! (live progress of the execution and its workflow tree) follows it to its end: the exit
//! code is then 1 unless it succeeded.

use clap::Subcommand;
use serde_json::{json, Value};

use super::{definition, execution, Paging};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::params;
use crate::watch::Show;
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum ActionCommand {
    /// List the actions you can see.
    List {
        /// Only this pack's.
        #[arg(long)]
        pack: Option<String>,
        /// Only this runner type's (shell, python, workflow, ...).
        #[arg(long)]
        runner: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an action and its parameters.
    Show { action: String },
    /// Run an action: `attune action run core.echo message=hello --wait`.
    Run {
        /// The action's ref.
        action: String,
        /// Parameters as name=value (typed by the action's schema: count=3, force=true,
        /// tags='["a","b"]').
        #[arg(value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// All parameters as one JSON object (name=value pairs override its keys).
        #[arg(long, value_name = "JSON")]
        params_json: Option<String>,
        /// Wait for the execution to end, then print it (exit code 1 unless it succeeded).
        #[arg(long, conflicts_with = "watch")]
        wait: bool,
        /// Follow the execution (and its workflow tasks) live, then print it (exit code 1
        /// unless it succeeded).
        #[arg(long)]
        watch: bool,
    },
}

pub const ACTION_COLUMNS: &[Column] = &[
    col("REF", |a| output::text(&a["ref"])),
    col("RUNNER", |a| output::text(&a["runner_type"])),
    col("ENABLED", |a| output::yes_no(&a["enabled"])),
    col("DESCRIPTION", |a| output::short(&a["description"], 70)),
];

pub async fn run(command: ActionCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        ActionCommand::List { pack, runner, paging } => {
            let mut query = paging.query();
            if let Some(p) = pack {
                query.push(("pack", p));
            }
            if let Some(r) = runner {
                query.push(("runner_type", r));
            }
            let page = api.list("/api/v1/actions", &query).await?;
            out.list(&page.items, ACTION_COLUMNS, Some(page.total));
        }
        ActionCommand::Show { action } => {
            let action = definition(&api, "action", &action).await?;
            show(&out, &action);
        }
        ActionCommand::Run { action, params: pairs, params_json, wait, watch } => {
            let found = definition(&api, "action", &action).await?;
            let parameters =
                params::parse(&pairs, params_json.as_deref(), "--params-json", &found["parameters"], "parameter")?;
            let created =
                api.post("/api/v1/executions", json!({"action": found["ref"], "parameters": parameters})).await?;
            let id = super::id_of(&created)?;
            match (wait, watch) {
                (false, false) => {
                    if out.machine() {
                        out.data(&created);
                    } else {
                        println!(
                            "Execution {id} of {} is {}: `attune execution watch {id}` follows it",
                            output::text(&created["action_ref"]),
                            output::text(&created["status"])
                        );
                    }
                }
                (true, _) => execution::follow_and_report(&api, &out, id, Show::Quiet).await?,
                (false, true) => execution::follow_and_report(&api, &out, id, Show::Progress).await?,
            }
        }
    }
    Ok(())
}

fn show(out: &Out, action: &Value) {
    let mut fields = vec![
        ("ref", output::text(&action["ref"])),
        ("description", output::text(&action["description"])),
        ("runner", output::text(&action["runner_type"])),
        ("enabled", output::yes_no(&action["enabled"])),
    ];
    for (key, label) in [("entry_point", "entry point"), ("command", "command"), ("timeout_seconds", "timeout (s)")] {
        if !action[key].is_null() {
            fields.push((label, output::text(&action[key])));
        }
    }
    if let Some(roles) = action["run_roles"].as_array() {
        fields.push(("run by", roles.iter().map(output::text).collect::<Vec<_>>().join(", ")));
    }
    if !action["retry"].is_null() {
        fields.push(("retry", output::text(&action["retry"])));
    }
    out.record(action, &fields);
    if out.machine() {
        return;
    }
    let rows = parameter_rows(&action["parameters"]);
    if !rows.is_empty() {
        println!("\n{}", out.paint(output::Paint::Bold, "Parameters"));
        print!("{}", out.render_table(&["NAME", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"], &rows));
    }
    if let Some(tasks) = action["workflow"]["tasks"].as_array() {
        println!("\n{}", out.paint(output::Paint::Bold, "Workflow tasks"));
        let rows: Vec<Vec<String>> = tasks
            .iter()
            .map(|t| {
                vec![
                    output::text(&t["name"]),
                    output::text(&t["action"]),
                    t["depends_on"]
                        .as_array()
                        .map(|d| d.iter().map(output::text).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default(),
                ]
            })
            .collect();
        print!("{}", out.render_table(&["TASK", "ACTION", "AFTER"], &rows));
    }
}

/// The parameters of the flat form (`{name: {type, required, default, description}}`) or
/// of a JSON Schema (`{"properties": {...}, "required": [...]}`), one row each.
fn parameter_rows(schema: &Value) -> Vec<Vec<String>> {
    let (properties, required): (Option<&serde_json::Map<String, Value>>, Vec<String>) = match schema.get("properties")
    {
        Some(Value::Object(props)) => (
            Some(props),
            schema["required"].as_array().map(|r| r.iter().map(output::text).collect()).unwrap_or_default(),
        ),
        _ => (schema.as_object(), Vec::new()),
    };
    let Some(properties) = properties else { return Vec::new() };
    properties
        .iter()
        .map(|(name, p)| {
            let required = required.contains(name) || p["required"] == json!(true);
            let mut kind = output::text(&p["type"]);
            if p["secret"] == json!(true) {
                kind.push_str(" (secret)");
            }
            vec![
                name.clone(),
                kind,
                if required { "yes".into() } else { "no".into() },
                if p.get("default").is_some() { output::short(&p["default"], 30) } else { String::new() },
                output::short(&p["description"], 60),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_of_both_forms() {
        let flat = json!({"url": {"type": "string", "required": true, "description": "where"}, "n": {"type": "integer", "default": 3}});
        let mut rows = parameter_rows(&flat);
        rows.sort();
        assert_eq!(
            rows,
            vec![
                vec!["n".to_string(), "integer".into(), "no".into(), "3".into(), "".into()],
                vec!["url".to_string(), "string".into(), "yes".into(), "".into(), "where".into()],
            ]
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]});
        assert_eq!(
            parameter_rows(&schema),
            vec![vec!["a".to_string(), "boolean".into(), "yes".into(), "".into(), "".into()]]
        );
    }
}
