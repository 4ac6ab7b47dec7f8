//! The `attune` CLI client: the client commands of the `attune` binary, over the REST API
//! and the WebSocket stream (docs/cli.md).
//!
//! The binary adds [`Command`] to its own subcommands and hands a parsed one to [`run`].
//!
//! # Layout
//! - [`profile`]: `~/.config/attune/config.yaml` (profiles), the tokens (0600), and the
//!   `ATTUNE_URL`/`ATTUNE_TOKEN` overrides.
//! - [`client`]: the HTTP client: bearer token, transparent refresh, API errors.
//! - [`output`]: tables and records for people, `--output json|yaml` for scripts; colour.
//! - [`params`]: `key=value` arguments typed by the action's (or inquiry's) schema.
//! - [`archive`]: a pack directory as the `.tar.gz` the upload route takes.
//! - [`stream`], [`watch`]: following an execution tree live over `/ws` (polling when
//!   there is no stream), with the progress display.
//! - [`commands`]: one module per resource (`pack`, `action`, `execution`, ...).
//! - [`help`]: `attune --help` with the server and the client commands in two groups.
//! - [`error`]: what can fail, and the exit codes: 0 ok, 1 a waited execution did not
//!   succeed, 2 usage or configuration, 3 the API refused or could not be reached.

pub mod archive;
pub mod client;
pub mod commands;
pub mod error;
pub mod help;
pub mod output;
pub mod params;
pub mod profile;
pub mod stream;
pub mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use nix::sys::signal::{signal, SigHandler, Signal};

use crate::commands::{action, audit, auth, event, execution, inquiry, key, pack, rule, trigger, user};
pub use crate::error::CliError;
use crate::output::Format;

/// Options of every client command.
#[derive(Args, Debug, Clone, Default)]
pub struct Options {
    /// Output: aligned tables (default), or json / yaml for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
    /// The profile of ~/.config/attune/config.yaml to use (default: the one last logged in
    /// with).
    #[arg(long, global = true, env = "ATTUNE_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
}

/// A resource's subcommands with the common options.
#[derive(Args, Debug)]
pub struct Resource<C: Subcommand> {
    #[command(flatten)]
    pub options: Options,
    #[command(subcommand)]
    pub command: C,
}

/// The client commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Log in to an Attune server; the tokens are kept in a profile.
    Login(auth::LoginArgs),
    /// Show who you are logged in as, and where.
    Whoami(Options),
    /// Forget the tokens of a profile.
    Logout(Options),
    /// Packs: list, show, install a directory, upload an archive, reload, remove.
    #[command(subcommand_required = true)]
    Pack(Resource<pack::PackCommand>),
    /// Actions: list, show, run (and wait for or watch the execution).
    Action(Resource<action::ActionCommand>),
    /// Rules: list, show, enable, disable.
    Rule(Resource<rule::RuleCommand>),
    /// Triggers: list, show, fire a webhook trigger.
    Trigger(Resource<trigger::TriggerCommand>),
    /// Executions: list, show, watch, cancel, children, tail.
    Execution(Resource<execution::ExecutionCommand>),
    /// Inquiries (questions of core.ask): list, show, respond.
    Inquiry(Resource<inquiry::InquiryCommand>),
    /// Datastore items: get, set (optionally encrypted), list, delete.
    Key(Resource<key::KeyCommand>),
    /// Events (what triggers received): list.
    Event(Resource<event::EventCommand>),
    /// The audit log (admins): list.
    Audit(Resource<audit::AuditCommand>),
    /// Users of your tenant (admins): add, list.
    User(Resource<user::UserCommand>),
    /// Print a shell completion script: `attune completions bash > /etc/bash_completion.d/attune`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs a client command and returns the process's exit code. `cli` builds the binary's
/// whole command line (for completion scripts).
pub fn run(command: Command, cli: impl FnOnce() -> clap::Command) -> ExitCode {
    if let Command::Completions { shell } = command {
        let mut cli = cli();
        let name = cli.get_name().to_string();
        clap_complete::generate(shell, &mut cli, name, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    // Output piped into `head` or `less` that closes early ends the process quietly, as
    // for any Unix tool, instead of a panic on the broken pipe. Sound here: the process
    // has one thread until the runtime below starts.
    // SAFETY: restores the default disposition of one signal; no handler runs Rust code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("attune: cannot start: {e}");
            return ExitCode::from(error::exit::API);
        }
    };
    match runtime.block_on(dispatch(command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let color = output::color_allowed(std::io::stderr().is_terminal());
            let prefix = if color { "\x1b[31mattune:\x1b[0m" } else { "attune:" };
            eprintln!("{prefix} {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn dispatch(command: Command) -> Result<(), CliError> {
    match command {
        Command::Login(args) => auth::login(args).await,
        Command::Whoami(options) => auth::whoami(&options).await,
        Command::Logout(options) => auth::logout(&options),
        Command::Pack(r) => pack::run(r.command, &r.options).await,
        Command::Action(r) => action::run(r.command, &r.options).await,
        Command::Rule(r) => rule::run(r.command, &r.options).await,
        Command::Trigger(r) => trigger::run(r.command, &r.options).await,
        Command::Execution(r) => execution::run(r.command, &r.options).await,
        Command::Inquiry(r) => inquiry::run(r.command, &r.options).await,
        Command::Key(r) => key::run(r.command, &r.options).await,
        Command::Event(r) => event::run(r.command, &r.options).await,
        Command::Audit(r) => audit::run(r.command, &r.options).await,
        Command::User(r) => user::run(r.command, &r.options).await,
        Command::Completions { .. } => unreachable!("handled by run"),
    }
}
