//! How Attune starts the programs of packs (actions, sensors): a clean environment (the
//! service's own variables — database URL, keys — are not passed on), piped standard
//! streams, and a process group of their own, so stopping one reaches everything it started.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

/// Prepares `cmd` to run a pack's program in `workdir`; add its own variables after.
pub fn isolate<'c>(cmd: &'c mut Command, workdir: &Path) -> &'c mut Command {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()))
        .env("LANG", "C.UTF-8")
        .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
        .current_dir(workdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
}
