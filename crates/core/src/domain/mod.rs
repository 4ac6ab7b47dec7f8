//! Parse-don't-validate types: once a value is one of these, the engine never checks it again.

pub mod inquiry;
pub mod params;
pub mod rbac;
pub mod refs;
pub mod runner;
pub mod status;
pub mod templates;
pub mod trigger_type;
pub mod workflow;

pub use params::ParamSchema;
pub use refs::{PackRef, Ref};
pub use runner::RunnerType;
pub use status::{EnforcementStatus, ExecutionStatus, WorkerStatus};
pub use trigger_type::TriggerType;
