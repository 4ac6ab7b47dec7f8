//! Attune core: what every service shares.
//!
//! # Layout
//! - [`admission`]: whether an execution may run (runner, action, parameters): one rule for
//!   manual runs, the scheduler and the rule engine.
//! - [`audit`]: the audit log's one writer (typed actors, batched).
//! - [`config`]: typed settings, layered defaults < YAML file < environment.
//! - [`db`]: the connection pool and the embedded migrations (schema `attune`).
//! - [`local_pg`]: the private PostgreSQL cluster used when no database URL is configured.
//! - [`lost_workers`]: finding workers whose session or heartbeat ended and moving on what
//!   they held (the executor's reaper; a worker registering).
//! - [`domain`]: parse-don't-validate types (refs, runner and trigger types, roles, the
//!   states of executions, enforcements and workers with the execution transition table,
//!   parameter schemas, templates).
//! - [`execution`]: creating executions; sealing and unsealing secret parameters.
//! - [`handoff`]: manual runs and workflow tasks handed to a free worker lane of the same process in the
//!   transaction that creates them (the lanes' register, the claimed row).
//! - [`crypto`]: AES-256-GCM sealing of secrets at rest.
//! - [`keyring`]: the encryption keys by version (current and previous), and rotation's
//!   re-sealing ([`keyring::rotate`]).
//! - [`datastore`]: datastore values at rest (sealed per item, with the key version).
//! - [`child`]: starting a pack's program (action runners, custom sensors) isolated.
//! - [`pack`]: the pack directory loader ([`pack::loader`]) and its all-or-nothing installer
//!   ([`pack::install`]).
//! - [`quoting`]: what error messages may quote of their input.
//! - [`service`]: the shared service context and the `run(ctx, shutdown)` shape.
//! - [`bootstrap`]: first-start work (system packs, the default tenant and admin).
//! - [`tokens`]: access, refresh and execution tokens (HS256 JWTs).
//! - [`wakeup`]: the process's one LISTEN connection ([`wakeup::Notifier`]), its
//!   [`wakeup::Channel`]s and coalesced NOTIFY hints.
//!
//! Every service crate depends on this one; no service crate depends on another.

pub mod admission;
pub mod audit;
pub mod bootstrap;
pub mod change_log;
pub mod child;
pub mod config;
pub mod crypto;
pub mod datastore;
pub mod db;
pub mod domain;
pub mod execution;
pub mod handoff;
pub mod held;
pub mod history;
pub mod keyring;
pub mod local_pg;
pub mod lost_workers;
pub mod metrics;
pub mod pack;
pub mod quoting;
pub mod service;
pub mod tokens;
pub mod wakeup;

pub use config::Config;
pub use service::{Context, Shutdown};
