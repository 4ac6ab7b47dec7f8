//! `attune reporting grant --tenant T --login L`: a read-only database login for a BI tool,
//! confined to one tenant, that may SELECT from the reporting views of schema
//! `attune_reporting` (docs/reporting.md). The work is
//! [`attune_core::db::grant_reporting_login`]; this prints the password, once.

use attune_core::{db, Config};

use crate::startup;

#[derive(clap::Subcommand)]
pub enum ReportingCommand {
    /// Create (or reset, with a new password) a LOGIN role for a BI tool that reads the
    /// reporting views of one tenant and can write nothing. The password is printed once.
    Grant {
        /// The tenant, by id or name.
        #[arg(long)]
        tenant: String,
        /// The role name to log in as (lower-case letters, digits, _).
        #[arg(long)]
        login: String,
    },
}

pub async fn run(config: Config, command: ReportingCommand) -> anyhow::Result<()> {
    match command {
        ReportingCommand::Grant { tenant, login } => {
            startup::with_admin_connection(config, move |conn| {
                Box::pin(async move {
                    let password = db::grant_reporting_login(conn, &tenant, &login).await?;
                    println!("login:    {login}");
                    println!("password: {password}");
                    println!("tenant:   {tenant}");
                    println!("(the password is shown only now; run the command again to reset it)");
                    Ok(())
                })
            })
            .await
        }
    }
}
