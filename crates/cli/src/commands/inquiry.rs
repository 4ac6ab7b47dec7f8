//! `attune inquiry list|show|respond`: the questions `core.ask` (and other inquiry
//! actions) put to people, and the answers.

use clap::Subcommand;
use serde_json::{json, Value};

use super::{parse_id, Paging};
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::params;
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum InquiryCommand {
    /// List inquiries, newest first (the pending ones unless --status says otherwise).
    List {
        /// pending (default), responded, expired, canceled, or all.
        #[arg(long, default_value = "pending")]
        status: String,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an inquiry: its prompt, what an answer must look like, and who may answer.
    Show { id: String },
    /// Answer an inquiry: `attune inquiry respond 3 approved=true`.
    Respond {
        id: String,
        /// The answer's fields as name=value (typed by the inquiry's schema).
        #[arg(value_name = "NAME=VALUE")]
        fields: Vec<String>,
        /// The whole answer as JSON (any JSON; name=value pairs override an object's keys).
        #[arg(long, value_name = "JSON")]
        response_json: Option<String>,
    },
}

const INQUIRY_COLUMNS: &[Column] = &[
    col("ID", |i| output::text(&i["id"])),
    col("STATUS", |i| output::text(&i["status"])),
    col("EXECUTION", |i| output::text(&i["execution_id"])),
    col("EXPIRES", |i| output::time(&i["expires_at"])),
    col("PROMPT", |i| output::short(&i["prompt"], 70)),
];

pub async fn run(command: InquiryCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        InquiryCommand::List { status, paging } => {
            let mut query = paging.query();
            if status != "all" {
                query.push(("status", status));
            }
            let page = api.list("/api/v1/inquiries", &query).await?;
            out.list(&page.items, INQUIRY_COLUMNS, Some(page.total));
        }
        InquiryCommand::Show { id } => {
            let id = parse_id("an inquiry", &id)?;
            let inquiry = api.get(&format!("/api/v1/inquiries/{id}"), &[]).await?;
            show(&out, &inquiry);
        }
        InquiryCommand::Respond { id, fields, response_json } => {
            let id = parse_id("an inquiry", &id)?;
            let inquiry = api.get(&format!("/api/v1/inquiries/{id}"), &[]).await?;
            let response = answer(&fields, response_json.as_deref(), &inquiry["schema"])?;
            let answered = api
                .post(&format!("/api/v1/inquiries/{id}/respond"), json!({"response": response}))
                .await
                .map_err(|e| match e {
                    CliError::Api(f) if f.status == 409 => CliError::Refused(format!(
                        "inquiry {id} takes no answer any more: {} (`attune inquiry show {id}`)",
                        f.message
                    )),
                    other => other,
                })?;
            if out.machine() {
                out.data(&answered);
            } else {
                let execution = output::text(&answered["execution_id"]);
                println!(
                    "Inquiry {id} answered with {}: execution {execution} goes on (`attune execution watch {execution}`)",
                    output::text(&answered["response"])
                );
            }
        }
    }
    Ok(())
}

/// The answer: name=value pairs (over `--response-json`'s object), or `--response-json`
/// alone, which may be any JSON (`true`, `"yes"`).
fn answer(fields: &[String], json: Option<&str>, schema: &Value) -> Result<Value, CliError> {
    if fields.is_empty() {
        let Some(text) = json else {
            return Err(CliError::usage(
                "give the answer as name=value (e.g. approved=true) or --response-json JSON; \
                 `attune inquiry show ID` shows what it must look like",
            ));
        };
        return serde_json::from_str(text).map_err(|e| CliError::usage(format!("--response-json is not JSON: {e}")));
    }
    params::parse(fields, json, "--response-json", schema, "field").map(Value::Object)
}

fn show(out: &Out, inquiry: &Value) {
    let mut fields = vec![
        ("id", output::text(&inquiry["id"])),
        ("status", output::text(&inquiry["status"])),
        ("prompt", output::text(&inquiry["prompt"])),
        ("schema", serde_json::to_string_pretty(&inquiry["schema"]).unwrap_or_default()),
        ("execution", output::text(&inquiry["execution_id"])),
        ("expires", output::time(&inquiry["expires_at"])),
    ];
    let list =
        |v: &Value| v.as_array().map(|a| a.iter().map(output::text).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let (roles, users) = (list(&inquiry["roles"]), list(&inquiry["users"]));
    if !roles.is_empty() || !users.is_empty() {
        fields
            .push(("may answer", [roles, users].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("; ")));
    }
    if !inquiry["default_response"].is_null() {
        fields.push(("default", output::text(&inquiry["default_response"])));
    }
    if !inquiry["response"].is_null() {
        fields.push(("response", output::text(&inquiry["response"])));
        fields.push(("answered by", output::text(&inquiry["responded_by_login"])));
        fields.push(("answered at", output::time(&inquiry["responded_at"])));
    }
    out.record(inquiry, &fields);
}
