//! Runner types: how a worker runs an action.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

pub const RUNNER_TYPES: &[&str] = &["builtin", "shell", "python", "node", "http", "container", "workflow", "inquiry"];

impl RunnerType {
    pub fn parse(s: &str) -> Result<RunnerType, String> {
        Ok(match s {
            "builtin" => RunnerType::Builtin,
            "shell" | "local-shell-cmd" | "local-shell-script" => RunnerType::Shell,
            "python" | "python3" | "python-script" => RunnerType::Python,
            "node" | "nodejs" => RunnerType::Node,
            "http" | "http-request" => RunnerType::Http,
            "container" => RunnerType::Container,
            "workflow" => RunnerType::Workflow,
            "inquiry" => RunnerType::Inquiry,
            other => {
                return Err(format!("unknown runner_type {other:?}: expected one of {}", RUNNER_TYPES.join(", ")));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunnerType::Builtin => "builtin",
            RunnerType::Shell => "shell",
            RunnerType::Python => "python",
            RunnerType::Node => "node",
            RunnerType::Http => "http",
            RunnerType::Container => "container",
            RunnerType::Workflow => "workflow",
            RunnerType::Inquiry => "inquiry",
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
