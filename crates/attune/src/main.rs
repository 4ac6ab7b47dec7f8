//! The `attune` binary: parses the command line, loads configuration, sets up tracing,
//! and hands over to [`startup`] (services) or the client commands.
//!
//! - `attune up`: every service in one process (on a private PostgreSQL when no URL is set).
//! - `attune serve api,executor,...`: any subset of services.
//! - `attune worker`: shorthand for `attune serve worker`.
//! - `attune migrate`: apply the database migrations and exit.
//! - `attune bench`: measure the event pipeline of a running instance.
//! - `attune keys new|rotate|status`: the encryption keys (see [`keys`]).
//! - `attune reporting grant`: a read-only BI login for one tenant (see [`reporting`]).
//! - the client commands (`login`, `pack`, `action`, `execution`, ...): [`attune_cli`],
//!   over the REST API of a running instance, with its own exit codes (docs/cli.md).
//!
//! Exit codes: 0 after a complete drain (the first SIGTERM/Ctrl-C), 1 when start-up or a
//! service failed, 2 for a bad command line or configuration, 128 + the signal's number
//! (143, 130) when a second signal cut the drain short (see `startup`, docs/operations.md).

mod bench;
mod keys;
mod reporting;
mod services;
mod startup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Subcommand};

use crate::services::Service;

#[derive(clap::Parser)]
#[command(name = "attune", version, about = "Event-driven automation on PostgreSQL")]
struct Cli {
    /// YAML configuration file (also ATTUNE_CONFIG). The environment overrides it.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process.
    Up,
    /// Run a subset of services, e.g. `attune serve api,notifier`.
    Serve {
        /// Comma-separated: api, executor, worker, sensor, notifier, bridge.
        #[arg(value_delimiter = ',', required = true)]
        services: Vec<Service>,
    },
    /// Run a worker (same as `attune serve worker`).
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Measure the event pipeline of a running instance (see docs/benchmarks.md).
    Bench(bench::BenchArgs),
    /// The encryption keys: make a new one current, re-seal everything under it, see where
    /// things stand (docs/datastore.md).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Reporting for BI tools: `grant` a read-only login for one tenant (docs/reporting.md).
    #[command(subcommand)]
    Reporting(reporting::ReportingCommand),
    #[command(flatten)]
    Client(attune_cli::Command),
}

/// Variables holding secrets: read once by `Config::load`, then removed from the process
/// environment so no child process (PostgreSQL's tools, a pack's program started without
/// the cleared environment of attune_core::child) inherits them.
const SECRET_VARIABLES: [&str; 6] = [
    "ATTUNE_ADMIN_PASSWORD",
    "ATTUNE_JWT_SECRET",
    "ATTUNE_ENCRYPTION_KEY",
    "ATTUNE_ENCRYPTION_PREVIOUS_KEYS",
    "ATTUNE_DATABASE_URL",
    "DATABASE_URL",
];

/// Removes [`SECRET_VARIABLES`]. Runs while the process has one thread (before the tokio
/// runtime starts): changing the environment is only sound then.
fn forget_secret_variables() {
    for name in SECRET_VARIABLES {
        std::env::remove_var(name);
    }
}

fn main() -> ExitCode {
    // `--help` lists the server and the client commands in two groups.
    let cli: Cli = attune_cli::help::parse();
    let cli = match cli.command {
        Command::Client(command) => return attune_cli::run(command, Cli::command),
        command => Cli { command, ..cli },
    };
    let config = match attune_core::Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("attune: {e}");
            return ExitCode::from(2);
        }
    };
    forget_secret_variables();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    if let Command::Keys(command) = &cli.command {
        match keys::run_offline(&config, command) {
            Ok(false) => {}
            Ok(true) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("attune: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime starts");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Up => startup::run_services(config, Service::ALL.to_vec()).await,
            Command::Serve { services } => startup::run_services(config, services).await,
            Command::Worker => startup::run_services(config, vec![Service::Worker]).await,
            Command::Migrate => startup::migrate_only(config).await,
            Command::Bench(args) => {
                startup::with_database(config, |config, pool| Box::pin(bench::run(config, pool, args))).await
            }
            Command::Keys(command) => {
                startup::with_database(config, |config, pool| Box::pin(keys::run(config, pool, command))).await
            }
            Command::Reporting(command) => reporting::run(config, command).await,
            Command::Client(_) => unreachable!("client commands return before the services' set-up"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("attune: {e:#}");
            ExitCode::FAILURE
        }
    }
}
