//! `attune user add|list`: the users of your tenant (admins).

use clap::Subcommand;
use serde_json::json;

use super::Paging;
use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user to your tenant.
    Add {
        login: String,
        /// admin, editor (definitions, datastore, runs), executor (runs, cancels, answers
        /// inquiries) or viewer (reads).
        #[arg(long, value_parser = ["admin", "editor", "executor", "viewer"])]
        role: String,
        /// Read the new user's password from the first line of stdin, instead of asking.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the users of your tenant.
    List {
        #[command(flatten)]
        paging: Paging,
    },
}

const USER_COLUMNS: &[Column] = &[
    col("ID", |u| output::text(&u["id"])),
    col("LOGIN", |u| output::text(&u["login"])),
    col("ROLE", |u| output::text(&u["role"])),
    col("CREATED", |u| output::time(&u["created_at"])),
];

pub async fn run(command: UserCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        UserCommand::Add { login, role, password_stdin } => {
            let password = super::password(&format!("Password for the new user {login}: "), password_stdin)?;
            let user = api.post("/api/v1/users", json!({"login": login, "password": password, "role": role})).await?;
            if out.machine() {
                out.data(&user);
            } else {
                println!(
                    "Added user {} ({}) to tenant {}: they log in with `attune login --url {} --user {}`",
                    output::text(&user["login"]),
                    output::text(&user["role"]),
                    output::text(&user["tenant_id"]),
                    api.url,
                    output::text(&user["login"])
                );
            }
        }
        UserCommand::List { paging } => {
            let page = api.list("/api/v1/users", &paging.query()).await?;
            out.list(&page.items, USER_COLUMNS, Some(page.total));
        }
    }
    Ok(())
}
