//! What can go wrong in a client command, each with the exit code it gives and a message
//! that says what to do about it.
//!
//! Exit codes (docs/cli.md): 0 success; 1 an execution the command waited for did not
//! succeed; 2 a usage or configuration error (bad arguments, not logged in); 3 the API
//! refused the request or could not be reached. Ctrl-C while watching is 130.

use std::fmt;

/// The exit codes of the client commands.
pub mod exit {
    pub const OK: u8 = 0;
    pub const EXECUTION_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const API: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or input files: what was wrong, with the input.
    #[error("{0}")]
    Usage(String),
    /// The profile, config file or credentials: not logged in, unreadable files.
    #[error("{0}")]
    Config(String),
    /// The API answered with an error.
    #[error("{0}")]
    Api(Box<ApiFailure>),
    /// The server refused what was asked, in a way the command explains itself (a login
    /// with a wrong password).
    #[error("{0}")]
    Refused(String),
    /// The server could not be reached (or answered something that is not Attune).
    #[error("{0}")]
    Unreachable(String),
    /// An execution the command waited for ended other than `succeeded`.
    #[error("execution {id} ({action}) ended {status}")]
    ExecutionFailed { id: i64, action: String, status: String },
    /// Ctrl-C while following an execution (which goes on).
    #[error("stopped watching execution {0}; it goes on: `attune execution watch {0}` follows it again")]
    Interrupted(i64),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => exit::USAGE,
            CliError::Api(_) | CliError::Refused(_) | CliError::Unreachable(_) => exit::API,
            CliError::ExecutionFailed { .. } => exit::EXECUTION_FAILED,
            CliError::Interrupted(_) => exit::INTERRUPTED,
        }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage(message.into())
    }

    pub fn config(message: impl Into<String>) -> CliError {
        CliError::Config(message.into())
    }
}

/// An error answer of the API: `{"error": {"code", "message"}}` and its status.
#[derive(Debug)]
pub struct ApiFailure {
    /// What the command was doing, e.g. `POST /api/v1/executions`.
    pub request: String,
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    pub retry_after: Option<String>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = if self.code.is_empty() { String::new() } else { format!(" {}", self.code) };
        write!(f, "{} failed (HTTP {}{code})", self.request, self.status)?;
        // A 422 lists its problems "a; b; c" (or already one per line): one per line reads
        // better than a run-on sentence.
        let problems: Vec<&str> = if self.message.contains('\n') {
            self.message.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
        } else if self.status == 422 || self.status == 400 {
            self.message.split("; ").collect()
        } else {
            vec![self.message.as_str()]
        };
        match problems.as_slice() {
            [] => {}
            [one] => write!(f, ": {one}")?,
            [first, rest @ ..] => {
                write!(f, ": {}", first.trim_end_matches(':'))?;
                for p in rest {
                    write!(f, "\n  - {}", p.trim_start_matches("- "))?;
                }
            }
        }
        if let Some(hint) = self.hint() {
            write!(f, "\n{hint}")?;
        }
        Ok(())
    }
}

impl ApiFailure {
    /// What to do next, where the status says more than the message.
    fn hint(&self) -> Option<String> {
        match self.status {
            401 => Some("your session is not valid on this server: run `attune login` again".into()),
            403 => {
                Some("your role may not do this: ask an admin of your tenant (`attune whoami` shows your role)".into())
            }
            429 => Some(match &self.retry_after {
                Some(s) => format!("rate limited: retry in {s} s"),
                None => "rate limited: retry shortly".into(),
            }),
            s if s >= 500 => Some(format!(
                "the server failed; its log has the details{}",
                self.request_id.as_ref().map(|id| format!(" under request id {id}")).unwrap_or_default()
            )),
            _ => None,
        }
    }
}
