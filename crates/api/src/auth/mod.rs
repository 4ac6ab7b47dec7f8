//! Who is calling, and what they may do.
//!
//! - [`tokens`]: HS256 access tokens and rotating refresh tokens.
//! - [`rbac`]: roles and the permissions each one has.
//! - [`credentials`]: login and password rules, password hashing off the async workers.
//! - [`principal`]: the `Principal` extractor every `/api/v1` route takes; it checks the
//!   bearer token and the per-user rate limit ([`crate::rate_limit`]) before any handler work.

pub mod credentials;
pub mod principal;
pub mod rbac;
pub mod tokens;

pub use principal::Principal;
pub use rbac::{Permission, Role};
