//! The states of executions, enforcements and workers, and the one table of the
//! execution transitions every writer keeps to.
//!
//! In the database they are `text` columns with a CHECK naming the same values, not
//! PostgreSQL enum types: reporting users read them as plain text, a new state is a
//! CHECK swapped in one transactional migration (`ALTER TYPE .. ADD VALUE` cannot be used
//! in the transaction that adds it), and the claims' partial indexes
//! (`WHERE status = 'scheduled'`) stay plain. A test compares each CHECK with these enums.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an execution is in its life (API.md "Executions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Created (manual run, workflow task); not admitted yet.
    Requested,
    /// Admitted; waiting for a worker (and for `run_after`).
    Scheduled,
    /// Claimed by a worker.
    Running,
    /// A workflow waiting (on an inquiry, or paused by a user).
    Paused,
    /// A cancel was asked for; its worker stops it.
    Canceling,
    Succeeded,
    Failed,
    Canceled,
    /// A workflow that finished with some tasks failed under `on_failure: continue`.
    SucceededWithErrors,
}

use ExecutionStatus::*;

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 9] =
        [Requested, Scheduled, Running, Paused, Canceling, Succeeded, Failed, Canceled, SucceededWithErrors];

    pub fn as_str(self) -> &'static str {
        match self {
            Requested => "requested",
            Scheduled => "scheduled",
            Running => "running",
            Paused => "paused",
            Canceling => "canceling",
            Succeeded => "succeeded",
            Failed => "failed",
            Canceled => "canceled",
            SucceededWithErrors => "succeeded_with_errors",
        }
    }

    pub fn parse(s: &str) -> Result<ExecutionStatus, String> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
            format!("status {s:?} is not one of {}", names.join(", "))
        })
    }

    /// Ended: nothing changes it any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Succeeded | Failed | Canceled | SucceededWithErrors)
    }

    /// The states an execution in `self` may move to. This is the one table of them; the
    /// statements that move executions (admission, claim, completion, retry, reaper,
    /// cancel) each take one of these steps, and the tests below pin the table.
    pub fn next(self) -> &'static [ExecutionStatus] {
        match self {
            // Admitted, refused by admission, or canceled before it ran.
            Requested => &[Scheduled, Failed, Canceled],
            // Claimed, or canceled before it ran; an inquiry opens `paused`.
            Scheduled => &[Running, Canceled, Paused],
            // Finished (by its own outcome), scheduled again (retry, or its worker was lost
            // with attempts left), asked to cancel, or paused (workflows).
            Running => &[Succeeded, Failed, Canceled, SucceededWithErrors, Scheduled, Canceling, Paused],
            // A workflow resumes (or ends); an inquiry is answered (or expires with its
            // default: succeeded; without one: failed), or is canceled.
            Paused => &[Running, Canceling, Canceled, Failed, Succeeded],
            // A cancel does not retry: it ends however the process ended.
            Canceling => &[Canceled, Succeeded, Failed, SucceededWithErrors],
            Succeeded | Failed | Canceled | SucceededWithErrors => &[],
        }
    }

    pub fn can_become(self, next: ExecutionStatus) -> bool {
        self.next().contains(&next)
    }

    /// The states a cancel request applies to.
    pub fn cancelable(self) -> bool {
        self.can_become(Canceled) || self.can_become(Canceling) || self == Canceling
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of one (rule, event) match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum EnforcementStatus {
    Created,
    /// Its execution was created.
    Processed,
    /// Criteria or parameter templates failed; `error` says why.
    Failed,
}

impl EnforcementStatus {
    pub const ALL: [EnforcementStatus; 3] =
        [EnforcementStatus::Created, EnforcementStatus::Processed, EnforcementStatus::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementStatus::Created => "created",
            EnforcementStatus::Processed => "processed",
            EnforcementStatus::Failed => "failed",
        }
    }
}

/// A worker's registration state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum WorkerStatus {
    Active,
    /// Stopping: claims nothing more, finishes what it runs.
    Draining,
    Stopped,
    /// Stopped heart-beating; the reaper handled what it held.
    Lost,
}

impl WorkerStatus {
    pub const ALL: [WorkerStatus; 4] =
        [WorkerStatus::Active, WorkerStatus::Draining, WorkerStatus::Stopped, WorkerStatus::Lost];

    pub fn as_str(self) -> &'static str {
        match self {
            WorkerStatus::Active => "active",
            WorkerStatus::Draining => "draining",
            WorkerStatus::Stopped => "stopped",
            WorkerStatus::Lost => "lost",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExecutionStatus::{self, *};

    #[test]
    fn every_allowed_transition() {
        let allowed: &[(ExecutionStatus, ExecutionStatus)] = &[
            (Requested, Scheduled),
            (Requested, Failed),
            (Requested, Canceled),
            (Scheduled, Running),
            (Scheduled, Canceled),
            (Scheduled, Paused),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Canceled),
            (Running, SucceededWithErrors),
            (Running, Scheduled),
            (Running, Canceling),
            (Running, Paused),
            (Paused, Running),
            (Paused, Canceling),
            (Paused, Canceled),
            (Paused, Failed),
            (Paused, Succeeded),
            (Canceling, Canceled),
            (Canceling, Succeeded),
            (Canceling, Failed),
            (Canceling, SucceededWithErrors),
        ];
        for (from, to) in allowed {
            assert!(from.can_become(*to), "{from} -> {to} should be allowed");
        }
        // And nothing else: the table has exactly these pairs.
        let count: usize = ExecutionStatus::ALL.iter().map(|s| s.next().len()).sum();
        assert_eq!(count, allowed.len());
    }

    #[test]
    fn forbidden_transitions() {
        for (from, to) in [
            (Requested, Running),
            (Requested, Succeeded),
            (Scheduled, Succeeded),
            (Scheduled, Failed),
            (Scheduled, Requested),
            (Canceling, Scheduled),
            (Canceling, Running),
            (Paused, Scheduled),
            (Running, Requested),
            (Running, Running),
        ] {
            assert!(!from.can_become(to), "{from} -> {to} should be forbidden");
        }
        for terminal in [Succeeded, Failed, Canceled, SucceededWithErrors] {
            assert!(terminal.is_terminal());
            for to in ExecutionStatus::ALL {
                assert!(!terminal.can_become(to), "{terminal} is terminal, yet -> {to}");
            }
        }
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in ExecutionStatus::ALL {
            assert_eq!(ExecutionStatus::parse(s.as_str()), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert!(ExecutionStatus::parse("done").unwrap_err().contains("succeeded_with_errors"));
    }

    #[test]
    fn cancel_applies_to_unfinished_executions_only() {
        for s in [Requested, Scheduled, Running, Paused, Canceling] {
            assert!(s.cancelable(), "{s}");
        }
        for s in [Succeeded, Failed, Canceled, SucceededWithErrors] {
            assert!(!s.cancelable(), "{s}");
        }
    }
}
