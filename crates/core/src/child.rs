//! How Attune starts the programs of packs (actions, sensors): untrusted code, written by
//! pack authors and tenants. Two ways, chosen by `sandbox.mode` (`ATTUNE_SANDBOX`):
//!
//! - [`Sandbox`] in `namespaces` mode (the default): each program in a bubblewrap sandbox
//!   of its own, as an unprivileged user, with resource limits (see "The sandbox");
//! - `none`: the unsandboxed start of [`isolate`], as the service's own user, with a
//!   warning once per process (see "Unsandboxed: the chain of deaths").
//!
//! Both give the program a clean environment (the service's own variables — database URL,
//! keys — are not passed on), piped standard streams, a process group of its own, and a
//! life no longer than the service's: a program never outlives the process that started
//! it, and what it started dies with it — `setsid` and double-forked descendants too.
//!
//! # The sandbox
//! Why bubblewrap (`/usr/bin/bwrap`, Debian package `bubblewrap`): it is small (one C file),
//! audited, the sandbox of every Flatpak app, and needs no setuid bit where the kernel
//! allows unprivileged user namespaces. Alternatives were hakoniwa (a Rust library, no
//! extra binary, but young and little reviewed) and nsjail (seccomp policies and cgroups
//! built in, but a far larger program to trust and install).
//!
//! ```text
//! service ─ unshare (outer user+PID namespaces) ─ bwrap (monitor; outer PID 1)
//!         ─ bwrap (the sandbox's PID 1: a reaper) ─ [prlimit ⇒] program (PID 2) ─ …
//! ```
//!
//! The command line, `<…>` per program ([`Sandbox::command`]):
//!
//! ```text
//! unshare --user --map-current-user --pid --fork --kill-child --
//!   /bin/sh -c GUARD attune-guard
//!   bwrap --unshare-user --disable-userns [--uid 65534 --gid 65534]
//!         --unshare-pid --unshare-ipc --unshare-uts --unshare-cgroup-try [--unshare-net]
//!         --hostname attune-sandbox --die-with-parent
//!         --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib (…) --ro-bind /etc /etc
//!         --proc /proc --dev /dev --size <memory> --tmpfs /dev/shm --size <memory> --tmpfs /tmp
//!         --ro-bind <pack dir> <pack dir>  --bind <each sandbox.bind folder> <same path>
//!         --bind <scratch> <scratch> --remount-ro / --remount-ro /dev --chdir <scratch>
//!   -- prlimit --nproc=<processes> -- <program> <args…>
//! ```
//!
//! - **Filesystem**: a read-only system (`/usr`, `/etc`, and `/bin` `/lib` `/lib64`
//!   `/sbin` as the symlinks or folders they are on the host), a fresh `/proc` that shows
//!   the sandbox's processes only, a minimal read-only `/dev`, an empty private `/tmp`
//!   and `/dev/shm` in memory (at most `memory_mb` each); the pack's directory read-only
//!   at its own path; the `sandbox.bind` folders read-write at theirs; and a private
//!   scratch folder, `<temp dir>/attune-run-<…>/scratch`, mode 0700 and owned by the
//!   program's user, that is its working directory, `$HOME` and `$TMPDIR`, removed when
//!   the [`Sandbox`] is dropped. Nothing else of the host: not the data dir, not
//!   PostgreSQL's socket folder, not other programs' scratch folders. The root is a tmpfs
//!   remounted read-only: writes land in the scratch folder, the private `/tmp` or a
//!   bound folder, nowhere else.
//! - **User**: when the service runs as root, the program's process switches (setgroups,
//!   setgid, setuid in the `pre_exec` hook, before anything is executed) to
//!   `sandbox.run_as`, else to the user [`ACTION_USER`] when it exists, else to uid/gid
//!   65534 (nobody/nogroup) — never root, never the service's user; `unshare` and `bwrap`
//!   then run unprivileged, in user namespaces. A service that is not root cannot switch
//!   users: the sandbox's user namespace then maps the service's uid to 65534 inside, and
//!   the mount namespace is what keeps the service's files out of reach (outside the
//!   sandbox the program's processes still belong to the service's uid: see
//!   docs/security.md).
//! - **Paths the user could not reach**: `bwrap`, running as that user, could not open a
//!   pack directory under a folder only root may enter (a 0700 temp dir). When the
//!   service is root, the `pre_exec` hook therefore first gives the child a private mount
//!   namespace and bind-mounts each of the program's folders onto an empty mount point
//!   inside the per-run folder (`attune-run-…/m0`, `m1`, …; the per-run folder has mode
//!   0711, so anyone may pass through it), and `bwrap` binds it from there to its real
//!   path. The host's mount table never sees these mounts. The folder's own permissions
//!   still apply inside.
//! - **Namespaces**: user (with further user namespaces disabled inside when `bwrap`
//!   supports it), mount, PID, IPC, UTS, cgroup where possible, and network when the
//!   action says `"network": false` (then only a loopback of its own).
//! - **Limits** ([`LimitsConfig`]): address space (`RLIMIT_AS`), open files
//!   (`RLIMIT_NOFILE`) and CPU seconds (`RLIMIT_CPU`: SIGXCPU at the limit, SIGKILL 5 s
//!   later) are set per process in the `pre_exec` hook before the user switch and
//!   inherited by everything; processes (`RLIMIT_NPROC`) by util-linux's `prlimit` inside
//!   the sandbox, so that it counts that sandbox's processes only (see `Tools::prlimit`;
//!   without `prlimit`, in the hook, counting all of the user's). [`limit_exceeded`]
//!   names the limit a failed program most likely hit.
//! - Descriptors the service inherited without close-on-exec are closed at exec (bwrap
//!   would pass them on).
//!
//! ## Deaths in the sandbox
//! bubblewrap alone is not enough: `--die-with-parent` gives the sandbox's PID 1 its death
//! signal only once it is set up, so a monitor killed while it builds the sandbox leaves
//! that PID 1 — soon running the program — behind with no service (seen in the chaos
//! tests). Hence the outer PID namespace, the chain of the unsandboxed start one level up:
//!
//! 1. The `pre_exec` hook gives `unshare` `PR_SET_PDEATHSIG(SIGKILL)` — after the user
//!    switch, which would clear it — and checks that the service is still alive.
//! 2. `--kill-child` gives `unshare`'s child, the outer PID 1, `PR_SET_PDEATHSIG(SIGKILL)`,
//!    and `GUARD` (a shell that then becomes `bwrap`) checks that `unshare` was still alive
//!    when that happened, which `unshare` does not: `unshare` leads the session the hook
//!    made (setsid()), so while it lives the guard's parent, read from the host's
//!    `/proc/self/stat`, is that session's leader.
//! 3. When the service dies, however and whenever it dies, the kernel kills `unshare`, then
//!    the outer PID 1 (the monitor), and when the PID 1 of a namespace dies the kernel kills
//!    every other process in it and in the namespaces inside it: the whole sandbox, with
//!    what called `setsid` or double-forked.
//!
//! When the program ends normally the monitor reports its status and exits, and so the
//! sandbox's leftovers die the same way (3). There is no `bwrap --new-session`: the hook's
//! setsid() already gives the sandbox a session without a controlling terminal (nothing to
//! push keystrokes into with `TIOCSTI`), and keeps every process of it that does not leave
//! it in the process group the service holds — `unshare` (which blocks SIGTERM), the two
//! PID 1s (which ignore signals they have no handler for) and the program — so that
//! [`Sandbox::signal`]'s SIGTERM reaches the program, and SIGKILL everything. A program
//! killed by signal N is reported by `bwrap` as exit code 128+N.
//!
//! # Unsandboxed: the chain of deaths
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
//! ## Fallback
//! Checked once, at the first start, by running the same chain with `true`: when
//! `unshare` is missing or the kernel refuses the namespaces, programs start directly in
//! their own process group with `PR_SET_PDEATHSIG(SIGKILL)` on the program itself, and a
//! warning says so once. What is lost: when the service dies, only the program itself
//! dies, not what it started; and what leaves the program's process group (`setsid`) can
//! outlive the program's run. (The sandbox has no such fallback: without a working
//! `bwrap` a program does not start, and the error says why.)
//!
//! # The starting thread
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, not the process.
//! Start these programs from async tasks: tokio's runtime worker threads live as long as
//! the runtime. Never from `spawn_blocking` (its threads end after some idle seconds)
//! nor inside `block_in_place` (the thread leaves the runtime for the blocking pool).

use std::ffi::{CString, OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

pub use crate::config::{LimitsConfig, SandboxConfig, SandboxMode};

/// Where util-linux installs `unshare`.
const UNSHARE: [&str; 2] = ["/usr/bin/unshare", "/bin/unshare"];
/// The namespace's PID 1.
const SHELL: &str = "/bin/sh";
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

/// Runs `cmd` (stderr piped); Ok when it exits 0 within 5 s, else what went wrong.
fn wait_briefly(mut cmd: std::process::Command) -> Result<(), String> {
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

fn path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
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

/// In the forked child: be killed when the service (the forking thread) ends. If the
/// service already died between the fork and here, nothing would ever send that signal:
/// die now instead.
fn die_with(service: u32) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    if nix::unistd::getppid().as_raw() as u32 != service {
        let _ = nix::sys::signal::raise(Signal::SIGKILL);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The sandbox
// ---------------------------------------------------------------------------------------

/// Where Debian's `bubblewrap` installs `bwrap`.
const BWRAP: [&str; 2] = ["/usr/bin/bwrap", "/bin/bwrap"];
/// util-linux's `prlimit` (see [`Tools::prlimit`]).
const PRLIMIT: [&str; 2] = ["/usr/bin/prlimit", "/bin/prlimit"];
/// The outer namespaces (see the module doc): `unshare`'s options before `--`.
const OUTER: [&str; 5] = ["--user", "--map-current-user", "--pid", "--fork", "--kill-child"];
/// The outer PID 1's check before it becomes `bwrap` (`$@`): `unshare --kill-child` gave
/// it `PR_SET_PDEATHSIG(SIGKILL)`, but does not check that `unshare` was still alive
/// then. `unshare` leads the session (the hook's setsid()): while it lives, this
/// process's parent is the session leader. `/proc` is still the host's, so both numbers
/// are host pids; orphaned, the parent is an init or a subreaper instead.
const GUARD: &str = r#"read -r _ _ _ ppid _ sid _ < /proc/self/stat && [ "$ppid" = "$sid" ] && exec "$@"
echo "attune: the service that started this sandbox is gone" >&2; exit 125"#;
const GUARD_NAME: &str = "attune-guard";
/// The user sandboxed programs run as, when it exists and `sandbox.run_as` is unset (a
/// root service only).
pub const ACTION_USER: &str = "attune-action";
/// nobody/nogroup: the user sandboxed programs run as otherwise, and the uid they see
/// inside when the service is not root.
pub const NOBODY: u32 = 65534;
/// `$PATH` inside the sandbox (the service's may name folders the sandbox has not).
const SANDBOX_PATH: &str = "/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin";
const HOSTNAME: &str = "attune-sandbox";
/// Top-level system folders: bound read-only, or recreated as the symlinks they are.
const SYSTEM: [&str; 7] = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"];
/// Between SIGXCPU (the soft CPU limit) and SIGKILL (the hard one).
const CPU_GRACE_SECS: u64 = 5;

/// An OS account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Who a sandboxed program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The service is root: the program's process becomes this account before the sandbox
    /// is built.
    Switch(Account),
    /// The service is not root and cannot switch: the program keeps the service's uid
    /// outside, mapped to [`NOBODY`] inside the sandbox.
    Mapped,
}

/// The identity of sandboxed programs under `run_as` (`sandbox.run_as`: a user name or
/// uid). Refused: root, the service's own user, and `run_as` in a service that is not
/// root (it could not switch).
pub fn identity(run_as: Option<&str>) -> Result<Identity, String> {
    let service = nix::unistd::geteuid();
    if !service.is_root() {
        return match run_as {
            None => Ok(Identity::Mapped),
            Some(user) => Err(format!(
                "sandbox.run_as ({user}) needs the service to run as root, to switch users; this service runs as \
                 uid {service}: unset sandbox.run_as (the sandbox then maps this uid to {NOBODY} inside)"
            )),
        };
    }
    let account = match run_as {
        Some(user) => lookup(user)?.ok_or_else(|| format!("sandbox.run_as: there is no user {user:?}"))?,
        None => lookup(ACTION_USER).ok().flatten().unwrap_or(Account { uid: NOBODY, gid: NOBODY }),
    };
    if account.uid == 0 || account.gid == 0 {
        return Err(format!("sandbox.run_as: actions never run as root (uid {} gid {})", account.uid, account.gid));
    }
    Ok(Identity::Switch(account))
}

/// A user by name or uid; a uid without a passwd entry gets the same number as gid.
fn lookup(user: &str) -> Result<Option<Account>, String> {
    use nix::unistd::{Uid, User};
    let found = match user.parse::<u32>() {
        Ok(uid) => {
            let entry = User::from_uid(Uid::from_raw(uid)).map_err(|e| format!("cannot look up uid {uid}: {e}"))?;
            Some(Account { uid, gid: entry.map_or(uid, |u| u.gid.as_raw()) })
        }
        Err(_) => User::from_name(user)
            .map_err(|e| format!("cannot look up user {user:?}: {e}"))?
            .map(|u| Account { uid: u.uid.as_raw(), gid: u.gid.as_raw() }),
    };
    Ok(found)
}

/// The programs a sandbox is built with, found working on this machine.
#[derive(Debug, Clone)]
struct Tools {
    unshare: PathBuf,
    bwrap: PathBuf,
    /// Whether `bwrap --disable-userns` works (bubblewrap ≥ 0.8 and a kernel that allows it).
    disable_userns: bool,
    /// Whether `bwrap --size` works (bubblewrap ≥ 0.5): the in-memory folders are capped.
    sized: bool,
    /// util-linux's `prlimit`: when present, the process limit is set by it inside the
    /// sandbox, so that it counts the processes of that sandbox alone — the kernel counts
    /// `RLIMIT_NPROC` per user *and user namespace*, and checks the outer counts against
    /// the limit the namespace's creator had. Set before the sandbox, it would count every
    /// process of the user on the machine: one action's fork bomb would stop all others.
    prlimit: Option<PathBuf>,
}

/// Checked once per process, at the first sandboxed start: a sandbox like the real ones
/// (as the user they run as) runs `true`, a few milliseconds.
fn tools() -> Result<&'static Tools, String> {
    static PROBED: OnceLock<Result<Tools, String>> = OnceLock::new();
    let probed = PROBED.get_or_init(|| {
        let probed = probe_tools();
        match &probed {
            Ok(t) => tracing::info!(
                bwrap = %t.bwrap.display(),
                disable_userns = t.disable_userns,
                sized = t.sized,
                prlimit = t.prlimit.is_some(),
                "actions and sensors run sandboxed (bubblewrap)"
            ),
            Err(e) => tracing::error!(
                error = %e,
                "the sandbox is unavailable: actions and sensors will not start (install bubblewrap, or set \
                 ATTUNE_SANDBOX=none to run them unsandboxed)"
            ),
        }
        probed
    });
    probed.as_ref().map_err(|e| e.clone())
}

fn probe_tools() -> Result<Tools, String> {
    let found = |names: &[&str]| names.iter().map(PathBuf::from).find(|p| p.is_file());
    let bwrap = found(&BWRAP)
        .ok_or_else(|| format!("bubblewrap is not installed ({}; Debian package `bubblewrap`)", BWRAP[0]))?;
    let unshare = found(&UNSHARE).ok_or_else(|| {
        format!("util-linux's unshare is not installed ({}; Debian package `util-linux`)", UNSHARE[0])
    })?;
    let identity = identity(None)?;
    let mut failures = Vec::new();
    for (disable_userns, sized) in [(true, true), (false, true), (false, false)] {
        let tools =
            Tools { unshare: unshare.clone(), bwrap: bwrap.clone(), disable_userns, sized, prlimit: found(&PRLIMIT) };
        let probe = Sandboxed {
            tools: tools.clone(),
            identity,
            network: false,
            limits: crate::Config::default().sandbox.limits,
            mounts: Vec::new(),
            stage: Vec::new(),
        };
        let (mut cmd, line) = sandboxed_command(&probe, Path::new("/"), OsStr::new("true"), &[]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        match wait_briefly(cmd) {
            Ok(()) => return Ok(tools),
            Err(e) => failures.push(format!("`{line}`: {e}")),
        }
    }
    Err(failures.join("; "))
}

/// A folder the sandbox shows at its own path.
#[derive(Debug, Clone)]
struct Mount {
    /// Where `bwrap` finds it: the folder itself, or the mount point it was staged on.
    source: PathBuf,
    path: PathBuf,
    writable: bool,
}

/// `bwrap`'s options: the namespaces, the system, the program's folders. The in-memory
/// folders (`/tmp`, `/dev/shm`) hold at most `memory` bytes each.
fn bwrap_args(
    tools: &Tools,
    identity: Identity,
    network: bool,
    mounts: &[Mount],
    scratch: &Path,
    memory: u64,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |items: &[&OsStr]| a.extend(items.iter().map(|s| s.to_os_string()));
    let s = |x: &'static str| OsStr::new(x);
    // `--unshare-user`, not `-try`: bwrap never runs privileged here, and without a user
    // namespace it could not build the others: better no start than a weaker sandbox.
    push(&[s("--unshare-user")]);
    if tools.disable_userns {
        push(&[s("--disable-userns")]);
    }
    if identity == Identity::Mapped {
        let nobody = OsString::from(NOBODY.to_string());
        push(&[s("--uid"), &nobody, s("--gid"), &nobody]);
    }
    push(&[s("--unshare-pid"), s("--unshare-ipc"), s("--unshare-uts"), s("--unshare-cgroup-try")]);
    if !network {
        push(&[s("--unshare-net")]);
    }
    // No `--new-session`: the hook's setsid() gives the same (see the module doc).
    push(&[s("--hostname"), s(HOSTNAME), s("--die-with-parent")]);
    push(&[s("--ro-bind"), s("/usr"), s("/usr")]);
    for dir in SYSTEM {
        let path = Path::new(dir);
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(path) {
                    push(&[s("--symlink"), target.as_os_str(), s(dir)]);
                }
            }
            Ok(m) if m.is_dir() => push(&[s("--ro-bind"), s(dir), s(dir)]),
            _ => {}
        }
    }
    // A resolv.conf that links out of /etc (systemd-resolved: /run/...): its target too.
    if let Ok(target) = std::fs::canonicalize("/etc/resolv.conf") {
        if !target.starts_with("/etc") && !target.starts_with("/usr") {
            push(&[s("--ro-bind-try"), target.as_os_str(), target.as_os_str()]);
        }
    }
    let memory = OsString::from(memory.to_string());
    let size: &[&OsStr] = if tools.sized { &[s("--size"), &memory] } else { &[] };
    push(&[s("--proc"), s("/proc"), s("--dev"), s("/dev")]);
    push(&[size, &[s("--tmpfs"), s("/dev/shm")]].concat());
    push(&[size, &[s("--tmpfs"), s("/tmp")]].concat());
    for m in mounts {
        let how = if m.writable { "--bind" } else { "--ro-bind" };
        push(&[s(how), m.source.as_os_str(), m.path.as_os_str()]);
    }
    if scratch != Path::new("/") {
        push(&[s("--bind"), scratch.as_os_str(), scratch.as_os_str()]);
    }
    push(&[s("--remount-ro"), s("/"), s("--remount-ro"), s("/dev"), s("--chdir"), scratch.as_os_str()]);
    a
}

/// The limits of one program, as `setrlimit` takes them: (soft, hard) each.
#[derive(Debug, Clone, Copy)]
struct Rlimits {
    address_space: (u64, u64),
    processes: (u64, u64),
    open_files: (u64, u64),
    cpu: (u64, u64),
}

impl Rlimits {
    /// `limits` as rlimits; a service that is not root cannot raise a hard limit, so
    /// each is kept within the service's own.
    fn of(limits: &LimitsConfig) -> Rlimits {
        use nix::libc;
        let root = nix::unistd::geteuid().is_root();
        let fit = |resource, soft: u64, hard: u64| {
            let mut current = libc::rlimit { rlim_cur: 0, rlim_max: libc::RLIM_INFINITY };
            // SAFETY: getrlimit writes the struct it is given.
            let known = unsafe { libc::getrlimit(resource, &mut current) } == 0;
            let hard = if root || !known { hard } else { hard.min(current.rlim_max) };
            (soft.min(hard), hard)
        };
        let mib = limits.memory_mb.saturating_mul(1024 * 1024);
        Rlimits {
            address_space: fit(libc::RLIMIT_AS, mib, mib),
            processes: fit(libc::RLIMIT_NPROC, limits.processes, limits.processes),
            open_files: fit(libc::RLIMIT_NOFILE, limits.open_files, limits.open_files),
            cpu: fit(libc::RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds.saturating_add(CPU_GRACE_SECS)),
        }
    }

    /// In the forked child: async-signal-safe system calls only. `RLIMIT_NPROC` only
    /// with `nproc` (see [`Tools::prlimit`]).
    fn apply(&self, nproc: bool) -> std::io::Result<()> {
        use nix::libc;
        let set = |resource, (soft, hard): (u64, u64)| {
            let limit = libc::rlimit { rlim_cur: soft, rlim_max: hard };
            // SAFETY: setrlimit reads the struct it is given.
            check(unsafe { libc::setrlimit(resource, &limit) })
        };
        set(libc::RLIMIT_AS, self.address_space)?;
        if nproc {
            set(libc::RLIMIT_NPROC, self.processes)?;
        }
        set(libc::RLIMIT_NOFILE, self.open_files)?;
        set(libc::RLIMIT_CPU, self.cpu)
    }
}

/// A failed system call's error (no allocation).
fn check(rc: nix::libc::c_int) -> std::io::Result<()> {
    if rc == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What the `pre_exec` hook of a sandboxed start does, prepared before the fork (the
/// hook itself may not allocate). It runs in the process that becomes `unshare`.
struct Hook {
    service: u32,
    /// (folder, mount point) pairs to bind in a private mount namespace first.
    stage: Vec<(CString, CString)>,
    limits: Rlimits,
    /// Whether `RLIMIT_NPROC` is set here (else by `prlimit` inside the sandbox).
    nproc_here: bool,
    switch: Option<Account>,
}

impl Hook {
    /// In the forked child, between fork and exec: system calls only, no allocation.
    /// A session of its own; the staged folders in a private mount namespace (root
    /// service); the limits; the standard streams given to the program's user and the
    /// switch to that user (root service); the death signal after that (a change of
    /// credentials clears it); every inherited descriptor but the standard streams
    /// closed at exec.
    fn run(&self) -> std::io::Result<()> {
        use nix::libc;
        // SAFETY (the whole block): plain system calls on values prepared before the
        // fork, which live as long as the hook.
        unsafe {
            check(libc::setsid())?;
            if !self.stage.is_empty() {
                check(libc::unshare(libc::CLONE_NEWNS))?;
                // The private namespace's mounts must not propagate back to the host's.
                let flags = libc::MS_REC | libc::MS_PRIVATE;
                check(libc::mount(c"none".as_ptr(), c"/".as_ptr(), std::ptr::null(), flags, std::ptr::null()))?;
                for (folder, point) in &self.stage {
                    let flags = libc::MS_BIND | libc::MS_REC;
                    check(libc::mount(folder.as_ptr(), point.as_ptr(), std::ptr::null(), flags, std::ptr::null()))?;
                }
            }
            self.limits.apply(self.nproc_here)?;
            if let Some(account) = self.switch {
                // The standard streams are pipes (and the input memfd) the service made:
                // give them to the program's user, so that it can reopen them
                // (/dev/stdout, /dev/stderr) like its own. Never a named file.
                for fd in 0..3 {
                    let mut st: libc::stat = std::mem::zeroed();
                    if libc::fstat(fd, &mut st) == 0 {
                        let kind = st.st_mode & libc::S_IFMT;
                        if kind == libc::S_IFIFO || (kind == libc::S_IFREG && st.st_nlink == 0) {
                            let _ = libc::fchown(fd, account.uid, account.gid);
                        }
                    }
                }
                check(libc::setgroups(1, &account.gid))?;
                check(libc::setgid(account.gid))?;
                check(libc::setuid(account.uid))?;
            }
            // Descriptors the service inherited without close-on-exec stay out of the
            // sandbox (bwrap passes on every open one). Best effort (Linux ≥ 5.11).
            let _ = libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_uint);
        }
        die_with(self.service)
    }
}

/// The command that starts `program` with `args` in sandbox `s` (see the module doc),
/// without the tokio parts (the probe runs it too), and its command line for messages.
fn sandboxed_command(
    s: &Sandboxed,
    scratch: &Path,
    program: &OsStr,
    args: &[OsString],
) -> (std::process::Command, String) {
    use std::os::unix::process::CommandExt;
    let mut line: Vec<OsString> = OUTER.iter().map(OsString::from).collect();
    line.extend(["--", SHELL, "-c", GUARD, GUARD_NAME].map(OsString::from));
    line.push(s.tools.bwrap.clone().into());
    let limits = Rlimits::of(&s.limits);
    line.extend(bwrap_args(&s.tools, s.identity, s.network, &s.mounts, scratch, limits.address_space.1));
    line.push("--".into());
    if let Some(prlimit) = &s.tools.prlimit {
        let (soft, hard) = limits.processes;
        line.extend([prlimit.clone().into(), format!("--nproc={soft}:{hard}").into(), "--".into()]);
    }
    line.push(program.to_os_string());
    line.extend(args.iter().cloned());
    let mut cmd = std::process::Command::new(&s.tools.unshare);
    cmd.args(&line)
        .env_clear()
        .env("PATH", SANDBOX_PATH)
        .env("LANG", "C.UTF-8")
        .env("HOME", scratch)
        .env("TMPDIR", scratch)
        .current_dir(scratch);
    let hook = Hook {
        service: std::process::id(),
        stage: s.stage.iter().map(|(folder, point)| (c_path(folder), c_path(point))).collect(),
        limits,
        nproc_here: s.tools.prlimit.is_none(),
        switch: match s.identity {
            Identity::Switch(account) => Some(account),
            Identity::Mapped => None,
        },
    };
    // SAFETY: runs between fork and exec; `Hook::run` only makes async-signal-safe
    // system calls on data prepared here, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || hook.run());
    }
    let shown = std::iter::once(s.tools.unshare.as_os_str().to_string_lossy())
        .chain(line.iter().map(|a| a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    (cmd, shown)
}

/// One program's start, sandboxed as `sandbox.mode` says, and its private folder: create
/// it with [`Sandbox::prepare`], add files with [`Sandbox::write_file`], build the
/// command with [`Sandbox::command`], start it with [`Sandbox::spawn`] and stop it with
/// [`Sandbox::signal`]. Dropping it removes the scratch folder.
#[derive(Debug)]
pub struct Sandbox {
    /// None: unsandboxed ([`isolate`]).
    sandboxed: Option<Sandboxed>,
    /// `<temp dir>/attune-run-<namespace>-<pid>-<random>`: the scratch folder and the
    /// mount points.
    run_dir: PathBuf,
    scratch: PathBuf,
    /// The process group the service started.
    group: Option<Pid>,
}

#[derive(Debug)]
struct Sandboxed {
    tools: Tools,
    identity: Identity,
    network: bool,
    limits: LimitsConfig,
    mounts: Vec<Mount>,
    /// (folder, mount point) to stage in the `pre_exec` hook.
    stage: Vec<(PathBuf, PathBuf)>,
}

impl Sandbox {
    /// Prepares one program's start under `config`: with `network` or not, and with
    /// `read_only` folders (its pack's directory; missing ones are left out) beside
    /// `config.bind`. Fails when the sandbox cannot be had (no working `bwrap`, a bad
    /// `run_as`, a missing `bind` folder): the program must not start unsandboxed.
    pub fn prepare(config: &SandboxConfig, network: bool, read_only: &[PathBuf]) -> Result<Sandbox, String> {
        let sandboxed = match config.mode {
            SandboxMode::None => {
                static WARNED: Once = Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "sandbox.mode is none (ATTUNE_SANDBOX=none): actions and sensors run UNSANDBOXED, as this \
                         service's own user, with its files, its network and no resource limits"
                    )
                });
                None
            }
            SandboxMode::Namespaces => {
                let tools = tools()?.clone();
                let identity = identity(config.run_as.as_deref())?;
                let mut mounts = Vec::new();
                for path in read_only.iter().filter(|p| p.is_dir()) {
                    mounts.push(Mount { source: path.clone(), path: path.clone(), writable: false });
                }
                for path in &config.bind {
                    if !path.is_absolute() || !path.is_dir() {
                        return Err(format!("sandbox.bind: {} is not an existing folder", path.display()));
                    }
                    mounts.push(Mount { source: path.clone(), path: path.clone(), writable: true });
                }
                Some(Sandboxed { tools, identity, network, limits: config.limits.clone(), mounts, stage: Vec::new() })
            }
        };
        let run_dir = make_run_dir().map_err(|e| format!("cannot create the program's scratch folder: {e}"))?;
        let mut sandbox = Sandbox { sandboxed, scratch: run_dir.join("scratch"), run_dir, group: None };
        sandbox.furnish().map_err(|e| format!("cannot create the program's scratch folder: {e}"))?;
        Ok(sandbox)
    }

    /// The scratch folder and, for a root service, the mount points of staged folders.
    fn furnish(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&self.scratch)?;
        let Some(s) = &mut self.sandboxed else { return Ok(()) };
        if let Identity::Switch(account) = s.identity {
            std::os::unix::fs::chown(&self.scratch, Some(account.uid), Some(account.gid))?;
            for (i, mount) in s.mounts.iter_mut().enumerate() {
                let point = self.run_dir.join(format!("m{i}"));
                std::fs::DirBuilder::new().mode(0o700).create(&point)?;
                s.stage.push((mount.path.clone(), point.clone()));
                mount.source = point;
            }
        }
        Ok(())
    }

    /// The program's private folder: its working directory, `$HOME` and `$TMPDIR` when
    /// sandboxed; where files for it go (`python` code) either way.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Whether the program runs in a sandbox (not `sandbox.mode = none`).
    pub fn is_sandboxed(&self) -> bool {
        self.sandboxed.is_some()
    }

    /// The limits the program runs under; None when unsandboxed.
    pub fn limits(&self) -> Option<&LimitsConfig> {
        self.sandboxed.as_ref().map(|s| &s.limits)
    }

    /// Writes `name` in the scratch folder, readable by the program's user.
    pub fn write_file(&self, name: &str, contents: &[u8]) -> std::io::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.scratch.join(name);
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut file, contents)?;
        if let Some(Sandboxed { identity: Identity::Switch(account), .. }) = &self.sandboxed {
            std::os::unix::fs::chown(&path, Some(account.uid), Some(account.gid))?;
        }
        Ok(path)
    }

    /// The command that starts `program` with `args`; add the program's own variables
    /// after. Unsandboxed it is [`isolate`]'s, in `workdir`; sandboxed, the sandbox's, in
    /// the scratch folder (`workdir` is not used). stdin, stdout and stderr are piped (set
    /// another stdin if it should be something else); the process started leads a
    /// process group of its own and is killed when dropped.
    pub fn command<I, S>(&mut self, program: impl AsRef<OsStr>, args: I, workdir: &Path) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let Some(s) = &self.sandboxed else { return isolate(program, args, workdir) };
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let (cmd, _) = sandboxed_command(s, &self.scratch, program.as_ref(), &args);
        let mut cmd = Command::from(cmd);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        cmd
    }

    /// Starts `cmd` (from [`Sandbox::command`]) and remembers its process group. Call it
    /// from an async task, not from `spawn_blocking` (see the module doc: the death
    /// signal follows the thread that forks).
    pub fn spawn(&mut self, cmd: &mut Command) -> std::io::Result<Child> {
        let child = cmd.spawn()?;
        self.group = child.id().map(|id| Pid::from_raw(id as i32));
        Ok(child)
    }

    /// Sends `signal` to the program's process group. Sandboxed, that group holds
    /// `unshare` (which blocks SIGTERM), the two PID 1s of the sandbox's namespaces
    /// (which ignore what they have no handler for; SIGKILL kills them, and so the
    /// whole sandbox) and the program with what it started in its group.
    pub fn signal(&self, signal: Signal) {
        if let Some(group) = self.group {
            let _ = killpg(group, signal);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.run_dir);
        if remove_tree(&dir).is_ok() {
            return;
        }
        // What the program left running may still be dying: a few more tries.
        let remove = move || {
            for attempt in 0..50 {
                std::thread::sleep(Duration::from_millis(20));
                match remove_tree(&dir) {
                    Ok(()) => return,
                    Err(e) if attempt == 49 => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a program's scratch folder")
                    }
                    Err(_) => {}
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// The inode of the initial PID namespace (the kernel's `PROC_PID_INIT_INO`).
const INIT_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The inode of the PID namespace of `process` (`self` or a pid).
fn pid_namespace(process: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{process}/ns/pid")).map(|m| m.ino()).ok()
}

/// The start of the names of the per-run folders of process `pid` of this PID namespace:
/// `attune-run-<namespace>-<pid>-`.
fn run_dir_prefix(pid: u32) -> String {
    format!("attune-run-{}-{pid}-", pid_namespace("self").unwrap_or(0))
}

/// Removes the per-run folders that services killed before they could clean up left in
/// the temp dir: those of processes of this PID namespace that no longer exist and, for
/// a root service of the initial PID namespace (which sees every process), those of PID
/// namespaces no process is in any more (a service that was PID 1 of a container's). A
/// folder of a live process is never touched. Done once per process, in the background,
/// at its first start of a program; tests call it too.
pub fn sweep_leftovers() {
    let ours = pid_namespace("self").unwrap_or(0);
    let live: Option<std::collections::HashSet<u64>> = (ours == INIT_PID_NAMESPACE && nix::unistd::geteuid().is_root())
        .then(|| {
            let pids = std::fs::read_dir("/proc").into_iter().flatten().flatten();
            pids.filter_map(|e| pid_namespace(&e.file_name().to_string_lossy())).collect()
        });
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("attune-run-") else { continue };
        let mut parts = rest.split('-').map(|p| p.parse::<u64>().ok());
        let (Some(Some(namespace)), Some(Some(pid))) = (parts.next(), parts.next()) else { continue };
        let stale = if namespace == ours {
            pid != u64::from(std::process::id()) && !Path::new(&format!("/proc/{pid}")).exists()
        } else {
            live.as_ref().is_some_and(|live| !live.contains(&namespace))
        };
        if stale {
            let _ = remove_tree(&entry.path());
        }
    }
}

/// A new `<temp dir>/attune-run-<PID namespace>-<pid>-<random>`, mode 0711: anyone may
/// pass through to the scratch folder and mount points inside (whose own modes guard
/// them), no one else may list it. The first call of a process sweeps the leftovers of
/// dead ones first ([`sweep_leftovers`]).
fn make_run_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    static SWEPT: Once = Once::new();
    SWEPT.call_once(|| drop(std::thread::Builder::new().name("attune-sweep".into()).spawn(sweep_leftovers)));
    let base = std::env::temp_dir();
    let prefix = run_dir_prefix(std::process::id());
    loop {
        let dir = base.join(format!("{prefix}{:016x}", rand::random::<u64>()));
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {
                // The umask may have taken bits away.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Removes `dir` whatever the program did to the permissions inside.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            open_up(dir);
            Err(e)
        }
    }
}

/// Gives the owner rwx on every folder under `dir` (not following symlinks).
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else { return };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            open_up(&entry.path());
        }
    }
}

fn c_path(path: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).expect("paths have no NUL byte")
}

/// Which of `limits` a program that failed with `exit_code` and `stderr` most likely
/// exceeded, as the sentence a failed execution's `error` begins with. Best effort: a
/// limit leaves no record, so this reads the signs — the exit code of a death by SIGXCPU
/// (CPU time), SIGKILL or SIGSEGV (memory: a failed allocation or the kernel's OOM
/// killer), and the messages programs print when an allocation, a fork or an open fails.
/// Only for programs that failed on their own (not timed out, not canceled).
pub fn limit_exceeded(limits: &LimitsConfig, exit_code: Option<i32>, stderr: &str) -> Option<String> {
    const SIGKILL: i32 = 128 + 9;
    const SIGSEGV: i32 = 128 + 11;
    const SIGXCPU: i32 = 128 + 24;
    let memory = || format!("exceeded its memory limit ({} MiB, sandbox.limits.memory_mb)", limits.memory_mb);
    let says = |needle: &str| stderr.contains(needle);
    if exit_code == Some(SIGXCPU) || says("CPU time limit exceeded") {
        return Some(format!("exceeded its CPU time limit ({} s, sandbox.limits.cpu_seconds)", limits.cpu_seconds));
    }
    if says("MemoryError") || says("Cannot allocate memory") || says("std::bad_alloc") || says("memory allocation of") {
        return Some(memory());
    }
    if says("Too many open files") {
        return Some(format!("exceeded its open files limit ({}, sandbox.limits.open_files)", limits.open_files));
    }
    let forking = stderr.to_ascii_lowercase().contains("fork");
    if forking && (says("Resource temporarily unavailable") || says("Cannot fork") || says("can't fork")) {
        return Some(format!("exceeded its process limit ({}, sandbox.limits.processes)", limits.processes));
    }
    match exit_code {
        Some(SIGKILL) => Some(format!("was killed (SIGKILL); it most likely {}", memory())),
        Some(SIGSEGV) => Some(format!("crashed (SIGSEGV); it may have {}", memory())),
        _ => None,
    }
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

#[cfg(test)]
mod sandbox_tests {
    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;

    fn config() -> SandboxConfig {
        crate::Config::default().sandbox
    }

    async fn output(sandbox: &mut Sandbox, script: &str) -> std::process::Output {
        let mut cmd = sandbox.command("/bin/sh", ["-c", script], Path::new("/"));
        cmd.stdin(Stdio::null());
        let child = sandbox.spawn(&mut cmd).expect("the sandbox starts");
        child.wait_with_output().await.unwrap()
    }

    #[tokio::test]
    async fn a_sandboxed_program_is_an_unprivileged_user_in_its_scratch_folder() {
        let mut sandbox = Sandbox::prepare(&config(), true, &[]).unwrap();
        let scratch = sandbox.scratch().to_path_buf();
        let out =
            output(&mut sandbox, "id -u; pwd; echo $HOME $TMPDIR; env | cut -d= -f1 | sort | tr '\\n' ' '; echo; ls /")
                .await;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        let lines: Vec<&str> = text.lines().collect();
        let uid: u32 = lines[0].parse().unwrap();
        assert_ne!(uid, 0);
        assert_ne!(uid, nix::unistd::geteuid().as_raw());
        assert_eq!(lines[1], scratch.to_str().unwrap());
        assert_eq!(lines[2], format!("{0} {0}", scratch.display()));
        assert_eq!(lines[3].trim(), "HOME LANG PATH PWD TMPDIR");
        assert!(!text.contains("home") && !text.contains("root") && !text.contains("work"), "{text}");
        drop(sandbox);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!scratch.exists(), "the scratch folder is removed");
    }

    #[tokio::test]
    async fn sigterm_reaches_the_program_and_leftovers_die_with_it() {
        let mut sandbox = Sandbox::prepare(&config(), false, &[]).unwrap();
        let mut cmd = sandbox.command(
            "/bin/sh",
            ["-c", "setsid sleep 300.9191 & trap 'echo got-term; exit 3' TERM; echo up; sleep 30 & wait"],
            Path::new("/"),
        );
        cmd.stdin(Stdio::null());
        let mut child = sandbox.spawn(&mut cmd).unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("up"));
        sandbox.signal(Signal::SIGTERM);
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("got-term"));
        assert_eq!(child.wait().await.unwrap().code(), Some(3));
        sandbox.signal(Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && sleeping("300.9191") {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!sleeping("300.9191"), "the setsid sleeper died with its sandbox");
    }

    /// A process of the host whose command line contains `marker`.
    fn sleeping(marker: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
    }

    #[tokio::test]
    async fn the_pack_is_read_only_and_bound_folders_writable_even_under_closed_folders() {
        use std::os::unix::fs::PermissionsExt;
        let closed = tempfile::tempdir().unwrap(); // 0700: the program's user cannot enter
        let pack = closed.path().join("pack");
        std::fs::create_dir_all(&pack).unwrap();
        std::fs::write(pack.join("data.txt"), "pack data\n").unwrap();
        let bound = closed.path().join("out");
        std::fs::create_dir(&bound).unwrap();
        std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o777)).unwrap();
        let mut config = config();
        config.bind = vec![bound.clone()];
        let mut sandbox = Sandbox::prepare(&config, true, std::slice::from_ref(&pack)).unwrap();
        let script = format!(
            "cat {p}/data.txt; touch {p}/x 2>/dev/null && echo pack-writable; echo hi > {b}/note; \
             touch /x 2>/dev/null && echo root-writable; ls {c} | tr '\\n' ' '",
            p = pack.display(),
            b = bound.display(),
            c = closed.path().display(),
        );
        let out = output(&mut sandbox, &script).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "pack data\nout pack ", "{out:?}");
        assert_eq!(std::fs::read_to_string(bound.join("note")).unwrap(), "hi\n");
    }

    #[tokio::test]
    async fn a_missing_bind_folder_or_a_root_run_as_refuses_to_start() {
        let mut config = config();
        config.bind = vec![PathBuf::from("/nonexistent/attune")];
        assert!(Sandbox::prepare(&config, true, &[]).unwrap_err().contains("/nonexistent/attune"));
        assert!(identity(Some("root")).is_err());
        assert!(identity(Some("0")).is_err());
    }

    #[test]
    fn the_leftovers_of_dead_services_are_swept_away() {
        let gone_namespace = std::env::temp_dir().join("attune-run-12345-1-x");
        std::fs::create_dir_all(&gone_namespace).unwrap();
        let dead = std::env::temp_dir().join(format!("{}x", run_dir_prefix(i32::MAX as u32)));
        let alive = std::env::temp_dir().join(format!("{}x", run_dir_prefix(std::process::id())));
        for dir in [&dead, &alive] {
            std::fs::create_dir_all(dir.join("scratch/deep")).unwrap();
        }
        sweep_leftovers();
        assert!(!dead.exists(), "a dead process's folder is removed");
        assert!(alive.exists(), "a live process's folder stays");
        if pid_namespace("self") == Some(INIT_PID_NAMESPACE) && nix::unistd::geteuid().is_root() {
            assert!(!gone_namespace.exists(), "a folder of a PID namespace that is gone is removed");
        } else {
            std::fs::remove_dir_all(&gone_namespace).unwrap();
        }
        std::fs::remove_dir_all(&alive).unwrap();
    }

    #[test]
    fn limits_are_named_from_exit_codes_and_messages() {
        let limits = crate::Config::default().sandbox.limits;
        let named = |code, stderr: &str| limit_exceeded(&limits, code, stderr);
        assert_eq!(
            named(Some(1), "Traceback...\nMemoryError\n").as_deref(),
            Some("exceeded its memory limit (1024 MiB, sandbox.limits.memory_mb)")
        );
        assert!(named(Some(152), "").unwrap().contains("sandbox.limits.cpu_seconds"));
        assert!(named(Some(2), "sh: 1: Cannot fork").unwrap().contains("sandbox.limits.processes"));
        assert!(named(Some(254), "bash: fork: retry: Resource temporarily unavailable")
            .unwrap()
            .contains("sandbox.limits.processes"));
        assert!(named(Some(1), "cat: x: Too many open files").unwrap().contains("sandbox.limits.open_files"));
        assert!(named(Some(137), "").unwrap().contains("sandbox.limits.memory_mb"));
        assert_eq!(named(Some(1), "no such file"), None);
        assert_eq!(named(Some(7), ""), None);
    }
}
