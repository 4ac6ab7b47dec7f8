//! `attune execution list|show|watch|cancel|children|tail`, and how an execution is shown.

use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use serde_json::{json, Value};

use super::{parse_id, Paging};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out, Paint};
use crate::stream::{Next, Stream};
use crate::watch::{self, Show};
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum ExecutionCommand {
    /// List executions, newest first.
    List {
        /// Only with this status (requested, scheduled, running, paused, canceling,
        /// succeeded, failed, canceled, succeeded_with_errors).
        #[arg(long)]
        status: Option<String>,
        /// Only of this action.
        #[arg(long)]
        action: Option<String>,
        /// Only started by this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only the children of this execution.
        #[arg(long, value_name = "ID")]
        parent: Option<i64>,
        /// Only those created since: a duration (30s, 10m, 2h, 7d) or a time (2026-01-27,
        /// 2026-01-27T10:30:00Z).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an execution: parameters, result, output, and its tasks.
    Show { id: String },
    /// Follow an execution and its workflow tree live until it ends (Ctrl-C stops
    /// watching, not the execution); exit code 1 unless it succeeded.
    Watch { id: String },
    /// Cancel an execution (a running one gets SIGTERM, then SIGKILL).
    Cancel { id: String },
    /// List an execution's children (workflow tasks, with-items items).
    Children {
        id: String,
        /// The whole tree below it, not just the direct children.
        #[arg(long)]
        all: bool,
    },
    /// With an id: print the output of the execution and of each of its tasks as they end.
    /// Without: print every execution change of your tenant as it happens (Ctrl-C stops).
    Tail { id: Option<String> },
}

pub const EXECUTION_COLUMNS: &[Column] = &[
    col("ID", |e| output::text(&e["id"])),
    col("ACTION", |e| output::text(&e["action_ref"])),
    col("STATUS", |e| output::text(&e["status"])),
    col("CREATED", |e| output::time(&e["created_at"])),
    col("DURATION", |e| if e["started_at"].is_null() { String::new() } else { output::elapsed(e) }),
    col("BY", |e| match (e["rule_ref"].as_str(), e["parent_id"].as_i64()) {
        (_, Some(p)) => format!("parent {p}"),
        (Some(r), None) => format!("rule {r}"),
        _ => String::new(),
    }),
];

pub async fn run(command: ExecutionCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        ExecutionCommand::List { status, action, rule, parent, since, paging } => {
            let since = since.map(|s| parse_since(&s, Utc::now())).transpose()?;
            let mut query = paging.query();
            for (key, value) in
                [("status", status), ("action", action), ("rule", rule), ("parent", parent.map(|p| p.to_string()))]
            {
                if let Some(v) = value {
                    query.push((key, v));
                }
            }
            let page = api.list("/api/v1/executions", &query).await?;
            let (items, total) = match since {
                // The API has no time filter: the list is newest first, so keep its head.
                Some(since) => (
                    page.items
                        .into_iter()
                        .filter(|e| output::parse_time(&e["created_at"]).is_some_and(|t| t >= since))
                        .collect(),
                    None,
                ),
                None => (page.items, Some(page.total)),
            };
            out.list(&items, EXECUTION_COLUMNS, total);
        }
        ExecutionCommand::Show { id } => {
            let id = parse_id("an execution", &id)?;
            let execution = api.get(&format!("/api/v1/executions/{id}"), &[]).await?;
            let tree = tree(&api, id).await?;
            print_execution(&out, &execution, &tree);
        }
        ExecutionCommand::Watch { id } => {
            let id = parse_id("an execution", &id)?;
            follow_and_report(&api, &out, id, Show::Progress).await?;
        }
        ExecutionCommand::Cancel { id } => {
            let id = parse_id("an execution", &id)?;
            let canceled =
                api.post(&format!("/api/v1/executions/{id}/cancel"), json!({})).await.map_err(|e| match e {
                    CliError::Api(f) if f.status == 409 => CliError::Refused(format!(
                        "execution {id} cannot be canceled: {} (`attune execution show {id}`)",
                        f.message
                    )),
                    other => other,
                })?;
            if out.machine() {
                out.data(&canceled);
            } else {
                println!("Execution {id} is {}", output::text(&canceled["status"]));
            }
        }
        ExecutionCommand::Children { id, all } => {
            let id = parse_id("an execution", &id)?;
            let mut query = vec![("limit", "1000".to_string())];
            if all {
                query.push(("depth", "all".into()));
            }
            let page = api.list(&format!("/api/v1/executions/{id}/children"), &query).await?;
            if out.machine() {
                out.data(&Value::Array(page.items));
            } else {
                print_tree(&out, &page.items);
            }
        }
        ExecutionCommand::Tail { id: Some(id) } => {
            let id = parse_id("an execution", &id)?;
            let execution = watch::follow(&api, id, Show::Output).await?;
            failed_unless_succeeded(&execution)?;
        }
        ExecutionCommand::Tail { id: None } => tail_all(&api, &out).await?,
    }
    Ok(())
}

/// Follows execution `id` to its end, prints it, and fails (exit code 1) unless it
/// succeeded.
pub async fn follow_and_report(api: &Api, out: &Out, id: i64, show: Show) -> Result<(), CliError> {
    let execution = watch::follow(api, id, show).await?;
    let tree = tree(api, id).await?;
    print_execution(out, &execution, &tree);
    failed_unless_succeeded(&execution)
}

fn failed_unless_succeeded(execution: &Value) -> Result<(), CliError> {
    match execution["status"].as_str() {
        Some("succeeded") => Ok(()),
        status => Err(CliError::ExecutionFailed {
            id: execution["id"].as_i64().unwrap_or_default(),
            action: output::text(&execution["action_ref"]),
            status: status.unwrap_or("?").to_string(),
        }),
    }
}

/// Every descendant of `id`, oldest first, with its depth.
async fn tree(api: &Api, id: i64) -> Result<Vec<Value>, CliError> {
    let query = [("depth", "all".to_string()), ("limit", "1000".to_string())];
    Ok(api.list(&format!("/api/v1/executions/{id}/children"), &query).await?.items)
}

/// An execution as a record (its tasks below it), or as JSON/YAML (with `children` when
/// it has any).
pub fn print_execution(out: &Out, execution: &Value, children: &[Value]) {
    if out.machine() {
        let mut value = execution.clone();
        if !children.is_empty() {
            value["children"] = Value::Array(children.to_vec());
        }
        out.data(&value);
        return;
    }
    let result = &execution["result"];
    let mut fields = vec![
        ("id", output::text(&execution["id"])),
        ("action", output::text(&execution["action_ref"])),
        ("status", output::text(&execution["status"])),
        ("parameters", output::text(&execution["parameters"])),
    ];
    if let Some(rule) = execution["rule_ref"].as_str() {
        fields.push(("rule", rule.to_string()));
    }
    if let Some(parent) = execution["parent_id"].as_i64() {
        fields.push(("parent", parent.to_string()));
    }
    if execution["max_attempts"].as_i64().unwrap_or(1) > 1 {
        fields.push((
            "attempt",
            format!("{}/{}", output::text(&execution["attempt"]), output::text(&execution["max_attempts"])),
        ));
    }
    fields.push(("created", output::time(&execution["created_at"])));
    if !execution["started_at"].is_null() {
        fields.push(("started", output::time(&execution["started_at"])));
        fields.push(("duration", output::elapsed(execution)));
    }
    if let Some(worker) = execution["worker"].as_str() {
        fields.push(("worker", worker.to_string()));
    }
    if !result["exit_code"].is_null() {
        fields.push(("exit code", output::text(&result["exit_code"])));
    }
    if !result["output"].is_null() {
        fields.push(("output", serde_json::to_string_pretty(&result["output"]).unwrap_or_default()));
    }
    if let Some(error) = result["error"].as_str() {
        fields.push(("error", error.to_string()));
    }
    if let Some(reason) = result["failure_reason"].as_str() {
        fields.push(("failure reason", reason.to_string()));
    }
    if result["truncated"] == json!(true) {
        fields.push(("truncated", "yes: the output was cut at the worker's limit".into()));
    }
    print!("{}", out.render_record(&fields));
    for stream in ["stdout", "stderr"] {
        if let Some(text) = result[stream].as_str().filter(|t| !t.trim().is_empty()) {
            println!("{}", out.paint(Paint::Dim, &format!("--- {stream}")));
            println!("{}", text.trim_end());
        }
    }
    if !children.is_empty() {
        println!("\n{}", out.paint(Paint::Bold, "Tasks"));
        print_tree(out, children);
    }
}

/// Executions as a table indented by their depth in the tree.
fn print_tree(out: &Out, items: &[Value]) {
    if items.is_empty() {
        eprintln!("(none)");
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let indent = "  ".repeat(e["depth"].as_u64().unwrap_or(1).saturating_sub(1) as usize);
            let task = match (e["workflow_task"].as_str(), e["item_index"].as_i64()) {
                (Some(t), Some(i)) => format!("{t}[{i}]"),
                (Some(t), None) => t.to_string(),
                _ => String::new(),
            };
            vec![
                format!("{indent}{}", output::text(&e["id"])),
                task,
                output::text(&e["action_ref"]),
                output::text(&e["status"]),
                if e["started_at"].is_null() { String::new() } else { output::elapsed(e) },
                if e["max_attempts"].as_i64().unwrap_or(1) > 1 {
                    format!("{}/{}", output::text(&e["attempt"]), output::text(&e["max_attempts"]))
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    print!("{}", out.render_table(&["ID", "TASK", "ACTION", "STATUS", "DURATION", "ATTEMPT"], &rows));
}

/// Every execution change of the tenant, one line each, until Ctrl-C.
async fn tail_all(api: &Api, out: &Out) -> Result<(), CliError> {
    let mut interrupt = watch::interrupt_signal()?;
    let token = api.token().await?;
    let mut stream = Stream::open(&api.url, &token, &["execution"], None)
        .await
        .map_err(|why| CliError::Unreachable(format!("cannot follow the executions: {why}")))?;
    eprintln!("following every execution of your tenant (Ctrl-C stops)");
    let mut last: Option<i64> = None;
    loop {
        let next = tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            next = stream.next() => next,
        };
        match next {
            Next::Change(change) => {
                last = change["id"].as_i64().or(last);
                let e = &change["data"];
                if out.machine() {
                    println!("{}", serde_json::to_string(&change).unwrap_or_default());
                    continue;
                }
                let status = output::text(&e["status"]);
                println!(
                    "{}  #{:<6} {:<28} {}{}",
                    output::time(&change["timestamp"]),
                    output::text(&e["id"]),
                    output::text(&e["action_ref"]),
                    out.paint(output::status_paint(&status), &status),
                    e["result"]["error"]
                        .as_str()
                        .map(|m| format!("  {}", output::short(&json!(m), 80)))
                        .unwrap_or_default()
                );
            }
            Next::Closed(close) => {
                let token = api.token().await?;
                stream = Stream::open(&api.url, &token, &["execution"], last).await.map_err(|why| {
                    CliError::Unreachable(format!("the stream closed ({close:?}) and cannot be reopened: {why}"))
                })?;
            }
        }
    }
}

/// `--since`: a duration back from `now` (`30s`, `10m`, `2h`, `7d`) or a time.
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, CliError> {
    let bad = || {
        CliError::usage(format!("--since {raw:?}: give a duration (30s, 10m, 2h, 7d) or a time (2026-01-27T10:30:00Z)"))
    };
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc());
    }
    let split = raw.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = raw.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(bad()),
    };
    Ok(now - chrono::Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-01-27T10:30:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_since("10m", now).unwrap().to_rfc3339(), "2026-01-27T10:20:00+00:00");
        assert_eq!(parse_since("2d", now).unwrap().to_rfc3339(), "2026-01-25T10:30:00+00:00");
        assert_eq!(parse_since("2026-01-01", now).unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert_eq!(parse_since("2026-01-27T09:00:00Z", now).unwrap().to_rfc3339(), "2026-01-27T09:00:00+00:00");
        assert!(parse_since("soon", now).is_err());
        assert!(parse_since("5w", now).is_err());
    }
}
