//! One module per resource: its clap subcommands and what each does over the API. What
//! they share — paging options, refs in paths, confirmation — is here.

pub mod action;
pub mod audit;
pub mod auth;
pub mod event;
pub mod execution;
pub mod inquiry;
pub mod key;
pub mod pack;
pub mod rule;
pub mod trigger;
pub mod user;

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;
use serde_json::Value;

use crate::client::Api;
use crate::error::CliError;

/// `--limit` and `--offset` of a list.
#[derive(Args, Debug, Clone)]
pub struct Paging {
    /// How many to show (at most 1000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub limit: i64,
    /// How many to skip (the newest first for runtime records, ref order for definitions).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i64).range(0..))]
    pub offset: i64,
}

impl Paging {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        vec![("limit", self.limit.to_string()), ("offset", self.offset.to_string())]
    }
}

/// A ref (or any user text) as one URL path segment.
pub fn segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A definition by ref (`/api/v1/{kind}s/ref/{ref}`), or by id when `key` is a number.
pub async fn definition(api: &Api, kind: &str, key: &str) -> Result<Value, CliError> {
    let path = match key.parse::<i64>() {
        Ok(id) => format!("/api/v1/{kind}s/{id}"),
        Err(_) => format!("/api/v1/{kind}s/ref/{}", segment(key)),
    };
    api.get(&path, &[]).await.map_err(|e| match e {
        CliError::Api(f) if f.status == 404 => CliError::Refused(format!(
            "no {kind} {key:?} in your tenant or the system packs: `attune {kind} list` shows them"
        )),
        other => other,
    })
}

/// The id of a definition.
pub fn id_of(definition: &Value) -> Result<i64, CliError> {
    definition["id"].as_i64().ok_or_else(|| CliError::Unreachable("the server's answer has no id".into()))
}

/// An execution or inquiry id given on the command line.
pub fn parse_id(what: &str, raw: &str) -> Result<i64, CliError> {
    raw.trim_start_matches('#')
        .parse::<i64>()
        .map_err(|_| CliError::usage(format!("{raw:?} is not {what} id: give the number, e.g. 42")))
}

/// Asks "`question` [y/N]" on a terminal; without one, `yes` must have been given.
pub fn confirm(question: &str, yes: bool) -> Result<bool, CliError> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(format!("{question}: confirm with --yes (no terminal to ask on)")));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::usage(format!("cannot read the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The first line of stdin (a password given with `--password-stdin`).
pub fn read_stdin_line(what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::usage(format!("cannot read {what} from stdin: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']).to_string();
    if line.is_empty() {
        return Err(CliError::usage(format!("{what} on stdin is empty")));
    }
    Ok(line)
}

/// A password: from stdin with `from_stdin`, else asked for on the terminal (not echoed).
pub fn password(prompt: &str, from_stdin: bool) -> Result<String, CliError> {
    if from_stdin {
        return read_stdin_line("the password");
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage("no terminal to ask for the password on: pipe it in with --password-stdin"));
    }
    let password =
        rpassword::prompt_password(prompt).map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?;
    if password.is_empty() {
        return Err(CliError::usage("the password is empty"));
    }
    Ok(password)
}
