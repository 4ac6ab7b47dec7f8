//! Roles and permissions live in the core (workers sign execution tokens with them too).

pub use attune_core::domain::rbac::{Permission, Role};
