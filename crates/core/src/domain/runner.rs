//! Runner types: how a worker runs an action.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Stored as `text` (see [`super::status`] for why not a PostgreSQL enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum RunnerType {
    /// The core pack's native actions, run in-process.
    Builtin,
    Shell,
    Python,
    Node,
    Http,
    Container,
    Workflow,
    Inquiry,
}

use RunnerType::*;

impl RunnerType {
    pub const ALL: [RunnerType; 8] = [Builtin, Shell, Python, Node, Http, Container, Workflow, Inquiry];

    /// What this version's workers run. Executions of the others fail at admission,
    /// naming the runner, instead of waiting forever for a worker.
    pub const AVAILABLE: [RunnerType; 6] = [Builtin, Shell, Python, Node, Http, Container];

    pub fn is_available(self) -> bool {
        Self::AVAILABLE.contains(&self)
    }

    /// Runs inside the worker's process (no child process, next to no CPU): the core
    /// pack's builtins, and http calls (which mostly wait on the network).
    pub fn in_process(self) -> bool {
        matches!(self, Builtin | Http)
    }

    /// Run by the executor itself (the workflow engine, the inquiries), never claimed by a
    /// worker.
    pub fn runs_in_executor(self) -> bool {
        matches!(self, Workflow | Inquiry)
    }

    /// Why an execution of this runner type cannot run, if it cannot: neither a worker
    /// ([`Self::AVAILABLE`]) nor the executor runs it.
    pub fn unavailable_reason(self) -> Option<String> {
        (!self.is_available() && !self.runs_in_executor())
            .then(|| format!("runner_type {self} is not available in this version of Attune"))
    }

    pub fn parse(s: &str) -> Result<RunnerType, String> {
        Ok(match s {
            "builtin" => Builtin,
            "shell" | "local-shell-cmd" | "local-shell-script" => Shell,
            "python" | "python3" | "python-script" => Python,
            "node" | "nodejs" => Node,
            "http" | "http-request" => Http,
            "container" => Container,
            "workflow" => Workflow,
            "inquiry" => Inquiry,
            other => {
                let names: Vec<&str> = Self::ALL.iter().map(|r| r.as_str()).collect();
                return Err(format!("unknown runner_type {other:?}: expected one of {}", names.join(", ")));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Builtin => "builtin",
            Shell => "shell",
            Python => "python",
            Node => "node",
            Http => "http",
            Container => "container",
            Workflow => "workflow",
            Inquiry => "inquiry",
        }
    }
}

impl fmt::Display for RunnerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RunnerType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RunnerType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RunnerType::parse(&s).map_err(serde::de::Error::custom)
    }
}
