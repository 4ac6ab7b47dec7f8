//! How Attune starts the programs of packs (actions, sensors): untrusted code, written by
//! pack authors and tenants. Two ways, chosen by `sandbox.mode` (`ATTUNE_SANDBOX`):
//!
//! - [`Sandbox`] in `namespaces` mode (the default): each program in a bubblewrap sandbox
//!   of its own, as an unprivileged user, with resource limits (see [`sandbox`]);
//! - `none`: the unsandboxed start of [`isolate`], as the service's own user, with a
//!   warning once per process (see [`unsandboxed`]).
//!
//! Both give the program a clean environment (the service's own variables — database URL,
//! keys — are not passed on), piped standard streams, a process group of its own, and a
//! life no longer than the service's: a program never outlives the process that started
//! it, and what it started dies with it — `setsid` and double-forked descendants too.
//!
//! # Layout
//! - [`sandbox`]: [`Sandbox`], the default: bubblewrap, another user, limits; with
//!   [`accounts`] (which user) and `run_dirs` (the per-run scratch folders).
//! - [`unsandboxed`]: [`isolate`], for `sandbox.mode = none`: a PID namespace that dies
//!   with the service, as the service's user.
//!
//! # The starting thread
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, not the process.
//! Start these programs from async tasks: tokio's runtime worker threads live as long as
//! the runtime. Never from `spawn_blocking` (its threads end after some idle seconds)
//! nor inside `block_in_place` (the thread leaves the runtime for the blocking pool).

use std::io::Read;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

pub mod accounts;
mod run_dirs;
pub mod sandbox;
pub mod unsandboxed;

pub use accounts::{identity, Account, Identity};
pub use run_dirs::sweep_leftovers;
pub use sandbox::{limit_exceeded, Sandbox, ACTION_USER, NOBODY};
pub use unsandboxed::{containment, isolate, Containment};

pub use crate::config::{LimitsConfig, SandboxConfig, SandboxMode};

/// Where util-linux installs `unshare`.
pub(super) const UNSHARE: [&str; 2] = ["/usr/bin/unshare", "/bin/unshare"];
/// The namespace's PID 1.
pub(super) const SHELL: &str = "/bin/sh";

/// Runs `cmd` (stderr piped); Ok when it exits 0 within 5 s, else what went wrong.
pub(super) fn wait_briefly(mut cmd: std::process::Command) -> Result<(), String> {
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("did not finish within 5 s".into());
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    Err(format!("{status}: {}", stderr.trim()))
}

pub(super) fn path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
}

/// In the forked child: be killed when the service (the forking thread) ends. If the
/// service already died between the fork and here, nothing would ever send that signal:
/// die now instead.
pub(super) fn die_with(service: u32) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() as u32 != service {
        let _ = nix::sys::signal::raise(Signal::SIGKILL);
    }
    Ok(())
}
