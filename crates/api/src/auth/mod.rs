//! Who is calling, and what they may do.
//!
//! - [`tokens`]: HS256 access tokens and rotating refresh tokens.
//! - [`rbac`]: roles and the permissions each one has.
//! - [`principal`]: the `Principal` extractor every `/api/v1` route takes; it checks the
//!   bearer token and the per-user rate limit before any handler work.

pub mod principal;
pub mod rate_limit;
pub mod rbac;
pub mod tokens;

pub use principal::Principal;
pub use rbac::{Permission, Role};
