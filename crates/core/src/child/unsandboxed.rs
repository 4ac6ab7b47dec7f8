//! Unsandboxed starts (`sandbox.mode = none`): the chain of deaths.
//! Where the kernel allows it, each program runs in a PID namespace of its own:
//!
//! ```text
//! service ─ unshare --pid --fork --kill-child ─ /bin/sh (PID 1: INIT) ─ program (PID 2) ─ …
//! ```
//!
//! 1. `unshare` gets `PR_SET_PDEATHSIG(SIGKILL)` (a `pre_exec` hook here, which also
//!    checks that the service did not die before the hook ran): when the service dies,
//!    however it dies, the kernel kills `unshare`.
//! 2. `--kill-child`: `unshare` gives its forked child, the namespace's PID 1,
//!    `PR_SET_PDEATHSIG(SIGKILL)`: it dies with `unshare`.
//! 3. When the PID 1 of a namespace dies, the kernel kills every other process in it —
//!    those that called `setsid` or double-forked too, which no process group reaches.
//!
//! The same step 3 clears up after a program that ends normally: PID 1 exits as soon as
//! the program does, and whatever the program left running in the namespace is killed
//! before `unshare` reports the exit. When the service is not root, the PID namespace
//! needs a user namespace as well: the service's own uid and gid are mapped
//! (`--map-current-user`, or `--map-root-user` — uid 0 inside — where `unshare` lacks
//! that option), so set-uid programs (`sudo`) gain nothing inside. The namespace has no
//! `/proc` of its own: `ps` shows the host's processes, while `$$` and `getpid()` are
//! namespace-local numbers (`/proc/self` resolves to the host's).
//!
//! The program is PID 2, not PID 1, because a namespace's PID 1 receives only the signals
//! it has a handler for (SIGKILL aside): a program running as PID 1 would ignore the
//! SIGTERM of a timeout or a cancel. The process group is `unshare`'s (the process the
//! caller holds) and holds PID 1 and the program, so `killpg` reaches the program as
//! before; `unshare` blocks SIGTERM and PID 1 (a shell without handlers) ignores it, and
//! PID 1 exits with the program's status. One difference: a program killed by signal N
//! is reported as exit code 128+N (a PID 1 cannot die of a signal of its own to pass it
//! on), as a shell reports it.
//!
//! # Fallback
//! Checked once, at the first start, by running the same chain with `true`: when
//! `unshare` is missing or the kernel refuses the namespaces, programs start directly in
//! their own process group with `PR_SET_PDEATHSIG(SIGKILL)` on the program itself, and a
//! warning says so once. What is lost: when the service dies, only the program itself
//! dies, not what it started; and what leaves the program's process group (`setsid`) can
//! outlive the program's run. (The sandbox has no such fallback: without a working
//! `bwrap` a program does not start, and the error says why.)
//!

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use tokio::process::Command;

use super::{die_with, path, wait_briefly, SHELL, UNSHARE};

/// PID 1's script: runs the program (`"$@"`) as a child and exits with its status. The
/// subshell's redirection happens in the child, so the shell's own job messages
/// ("Terminated" when the program dies of SIGTERM) go to /dev/null while the program
/// writes to the real stderr. `unset PWD`: the shell would otherwise add it to the
/// program's (clean) environment.
const INIT: &str = r#"unset PWD; exec 3>&2 2>/dev/null; ("$@") 2>&3 3>&-; exit $?"#;
/// PID 1's `$0`, as it appears in `ps` and in the shell's own error messages.
const INIT_NAME: &str = "attune-init";

/// How programs are kept from outliving the service, chosen once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Containment {
    /// A PID namespace per program, started by `unshare` with these options.
    PidNamespace { unshare: PathBuf, options: Vec<&'static str> },
    /// A process group per program, and `PR_SET_PDEATHSIG` on the program only.
    ProcessGroup { reason: String },
}

/// The containment of this process's programs: checked at the first call (which runs
/// `unshare` once and waits for it, a few milliseconds), then remembered.
pub fn containment() -> &'static Containment {
    static CHOSEN: OnceLock<Containment> = OnceLock::new();
    CHOSEN.get_or_init(|| {
        let chosen = probe();
        match &chosen {
            Containment::PidNamespace { options, .. } => {
                tracing::debug!(options = options.join(" "), "pack programs run in a PID namespace of their own")
            }
            Containment::ProcessGroup { reason } => tracing::warn!(
                reason,
                "pack programs cannot run in a PID namespace of their own; falling back to a process group: \
                 when this service dies, what its actions and sensors started keeps running, and a process \
                 that leaves its group (setsid) can outlive its action"
            ),
        }
        chosen
    })
}

fn probe() -> Containment {
    let Some(unshare) = UNSHARE.iter().map(Path::new).find(|p| p.is_file()) else {
        return Containment::ProcessGroup { reason: format!("util-linux's unshare is not installed ({})", UNSHARE[0]) };
    };
    let namespace = ["--pid", "--fork", "--kill-child"];
    let candidates: Vec<Vec<&'static str>> = if nix::unistd::geteuid().is_root() {
        vec![namespace.to_vec()]
    } else {
        [["--user", "--map-current-user"], ["--user", "--map-root-user"]]
            .iter()
            .map(|user| user.iter().chain(&namespace).copied().collect())
            .collect()
    };
    let mut failures = Vec::new();
    for options in candidates {
        match try_unshare(unshare, &options) {
            Ok(()) => return Containment::PidNamespace { unshare: unshare.to_path_buf(), options },
            Err(e) => failures.push(format!("`{} {} -- true`: {e}", unshare.display(), options.join(" "))),
        }
    }
    Containment::ProcessGroup { reason: failures.join("; ") }
}

/// Runs `true` the way programs will be run; Ok when it exits 0 within 5 s.
fn try_unshare(unshare: &Path, options: &[&str]) -> Result<(), String> {
    let mut cmd = std::process::Command::new(unshare);
    cmd.args(options)
        .arg("--")
        .args([SHELL, "-c", INIT, INIT_NAME, "true"])
        .env_clear()
        .env("PATH", path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    wait_briefly(cmd)
}

/// A command that runs `program` with `args` in `workdir`, contained as [`containment`]
/// says; add the program's own variables after. stdin, stdout and stderr are piped (set
/// another stdin if it should be something else). The process the returned command
/// starts is the leader of the program's process group, and is killed when dropped.
///
/// Call `spawn` on the result from an async task, not from `spawn_blocking` (see the
/// module doc: the death signal follows the forking thread).
pub fn isolate<I, S>(program: impl AsRef<OsStr>, args: I, workdir: &Path) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = match containment() {
        Containment::PidNamespace { unshare, options } => {
            let mut cmd = Command::new(unshare);
            cmd.args(options).arg("--").args([SHELL, "-c", INIT, INIT_NAME]).arg(program);
            cmd
        }
        Containment::ProcessGroup { .. } => Command::new(program),
    };
    cmd.args(args)
        .env_clear()
        .env("PATH", path())
        .env("LANG", "C.UTF-8")
        .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
        .current_dir(workdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let service = std::process::id();
    // SAFETY: runs between fork and exec; it only makes async-signal-safe system calls
    // (prctl, getppid, kill) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || die_with(service));
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_program_runs_with_a_clean_environment_and_its_exit_code() {
        let mut cmd = isolate("env", Vec::<&str>::new(), Path::new("/"));
        cmd.env("ATTUNE_X", "1").stdin(Stdio::null());
        let out = cmd.output().await.unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        let mut names: Vec<&str> = env.lines().filter_map(|l| l.split_once('=').map(|(k, _)| k)).collect();
        names.sort();
        assert_eq!(names, ["ATTUNE_X", "HOME", "LANG", "PATH"], "{env}");
        assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");

        let mut cmd = isolate("/bin/sh", ["-c", "exit 7"], Path::new("/"));
        cmd.stdin(Stdio::null());
        assert_eq!(cmd.status().await.unwrap().code(), Some(7));
    }

    #[tokio::test]
    async fn a_program_gets_sigterm_and_its_death_is_128_plus_the_signal() {
        let mut cmd = isolate("/bin/sh", ["-c", "echo up; kill -TERM $$; sleep 5"], Path::new("/"));
        cmd.stdin(Stdio::null());
        let out = cmd.output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "up\n");
        match containment() {
            Containment::PidNamespace { .. } => {
                assert_eq!(out.status.code(), Some(143));
                assert!(out.stderr.is_empty(), "the init's job messages stay out: {:?}", out.stderr);
            }
            Containment::ProcessGroup { .. } => assert_eq!(out.status.code(), None),
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_a_failure() {
        let mut cmd = isolate("/nonexistent/attune-program", Vec::<&str>::new(), Path::new("/"));
        cmd.stdin(Stdio::null());
        match cmd.output().await {
            Ok(out) => {
                assert_eq!(out.status.code(), Some(127));
                assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/attune-program"));
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        }
    }
}
