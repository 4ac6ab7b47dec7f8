//! Attune core: what every service shares.
//!
//! # Layout
//! - [`config`]: typed settings, layered defaults < YAML file < environment.
//! - [`db`]: the connection pool and the embedded migrations (schema `attune`).
//! - [`local_pg`]: the private PostgreSQL cluster used when no database URL is configured.
//! - [`domain`]: parse-don't-validate types (refs, runner types, parameter schemas, templates).
//! - [`pack`]: the pack directory loader ([`pack::loader`]) and its all-or-nothing installer
//!   ([`pack::install`]).
//! - [`service`]: the shared service context and the `run(ctx, shutdown)` shape.
//! - [`bootstrap`]: first-start work (system packs, the default tenant and admin).
//! - [`tokens`]: access, refresh and execution tokens (HS256 JWTs).
//!
//! Every service crate depends on this one; no service crate depends on another.

pub mod audit;
pub mod bootstrap;
pub mod child;
pub mod config;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod execution;
pub mod local_pg;
pub mod pack;
pub mod service;
pub mod tokens;
pub mod wakeup;

pub use config::Config;
pub use service::{Context, Shutdown};
