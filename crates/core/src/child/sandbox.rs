//! The sandbox (`sandbox.mode = namespaces`, the default).
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
//! # Deaths in the sandbox
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

use std::ffi::{CString, OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Once, OnceLock};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

pub use crate::config::{LimitsConfig, SandboxConfig, SandboxMode};

use super::accounts::{identity, Account, Identity};
use super::run_dirs::{c_path, make_run_dir, remove_tree};
#[cfg(test)]
use super::run_dirs::{pid_namespace, run_dir_prefix, sweep_leftovers, INIT_PID_NAMESPACE};
use super::{die_with, isolate, wait_briefly, SHELL, UNSHARE};

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
mod sandbox_tests {
    use std::time::Instant;
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
