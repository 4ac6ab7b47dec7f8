//! Per-pack runtime environments: the dependencies a pack declares, installed once per
//! (pack ref, pack version, hash of its dependency files) and shared by every execution
//! of its actions on this machine.
//!
//! - [`python`]: a virtualenv (`python3 -m venv` + `pip install -r requirements.txt`) for
//!   packs with a `requirements.txt`; its python runs the pack's python actions;
//! - [`node`]: a `node_modules` (`npm ci` with a `package-lock.json`, else `npm install`)
//!   for packs with a `package.json`; it is the `NODE_PATH` of the pack's node actions.
//!
//! # Where
//! `<data_dir>/envs/<kind>/<pack>-<version>-<hash>/`, the hash covering the kind, the
//! pack's ref and version and the dependency files (so an edited `requirements.txt` gets
//! an environment of its own). Beside each: `.<name>.lock` (the build lock) and, while it
//! is built, `.build-<name>-<random>/`. A finished environment holds [`MARKER`], written
//! last: a folder without it (half deleted by hand) is rebuilt, never used.
//!
//! # Built once, never half
//! The first execution that needs an environment builds it; every other one — of this
//! worker, of other workers, of other processes sharing the data dir — waits for that
//! build. The lock is an exclusive `flock` on the lock file rather than a PostgreSQL
//! advisory lock: what it guards is a folder of this machine's data dir, so its scope is
//! exactly that folder (workers of other machines, with data dirs of their own, build
//! their own copies without waiting for each other); the kernel drops it when its holder
//! dies, however it dies; and it holds no database connection for the minutes a `pip
//! install` may take. The build happens in a temporary folder renamed into place when it
//! is complete, so no execution ever sees a half-built environment; a failed build
//! leaves nothing behind but its error (`.<name>.failed`), and fails the executions that
//! waited for it with the tail of the installer's output — one build per burst of
//! executions, not one each. An execution that comes later tries again.
//!
//! # Sandboxed
//! A build runs pack code (a package's `setup.py`, npm's install scripts) and whatever
//! the dependency files point at, so it runs like an action: in the sandbox, as the
//! action user, with network, seeing its pack's directory read-only and, read-write, only
//! its own build folder; under the action limits, but with at least [`BUILD_MEMORY_MB`]
//! of address space. When it is done the worker takes the files back (owned by the
//! worker's user when it is root, nobody's write bit) and renames the folder into place;
//! actions then see their environment read-only.

pub mod node;
pub mod python;

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use attune_core::child::{identity, limit_exceeded, Identity, Sandbox, SandboxMode};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::masking::Masker;
use crate::output::capture;
use crate::runners::Job;

/// Written last into a finished environment: what it is and how long it took to build.
pub const MARKER: &str = ".attune-env.json";
/// How long one build may take (waiting for another worker's build is bounded by it too).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How much of the installer's output's end a failed build's error keeps.
const ERROR_TAIL: usize = 2000;
/// How often a waiter looks at a lock another build holds.
const LOCK_POLL: Duration = Duration::from_millis(100);
/// How much of a build's output is read (the rest is drained).
const OUTPUT_LIMIT: usize = 64 * 1024;
/// The least address space a build gets (`sandbox.limits.memory_mb` when that is more):
/// npm's V8 reserves about 730 MiB of address space before it does anything (measured
/// with node 20: `VmSize` of `node -e 1`; a 512 MiB code range is most of it), so under the
/// default 1024 MiB limit `npm ci` aborted in about one run of five on a loaded machine.
pub const BUILD_MEMORY_MB: u64 = 4096;

/// Why an environment is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// The execution was canceled while it waited for or built its environment.
    Canceled,
    /// The build failed: the message names the pack, the files and the installer's error.
    Failed(String),
}

/// The kinds of environments: the folder under `<data_dir>/envs/` and what they are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Python,
    Node,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Python => "python",
            Kind::Node => "node",
        }
    }
}

/// One environment: where it goes and what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvKey {
    pub kind: Kind,
    pub pack_ref: String,
    pub pack_version: String,
    /// sha256 (hex) of the kind, the pack's ref and version and the dependency files.
    pub hash: String,
    /// `<pack>-<version>-<first 16 hex digits of the hash>`: the environment's folder.
    pub name: String,
}

impl EnvKey {
    /// The key of `pack_ref`'s `pack_version` with dependency `files` (name, contents).
    pub fn new(kind: Kind, pack_ref: &str, pack_version: &str, files: &[(&str, &[u8])]) -> EnvKey {
        let mut hasher = Sha256::new();
        // Every part is length-prefixed: no two different inputs hash the same bytes.
        let mut part = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        part(kind.as_str().as_bytes());
        part(pack_ref.as_bytes());
        part(pack_version.as_bytes());
        for (name, contents) in files {
            part(name.as_bytes());
            part(contents);
        }
        let hash = hex::encode(hasher.finalize());
        let name = format!("{}-{}-{}", file_name_part(pack_ref), file_name_part(pack_version), &hash[..16]);
        EnvKey { kind, pack_ref: pack_ref.to_string(), pack_version: pack_version.to_string(), hash, name }
    }

    /// `python environment of pack p 1.0.0`, for messages.
    pub fn describe(&self) -> String {
        format!("{} environment of pack {} {}", self.kind.as_str(), self.pack_ref, self.pack_version)
    }
}

/// `s` fit for a file name: at most 64 of `A-Za-z0-9._-`, others as `_`.
fn file_name_part(s: &str) -> String {
    let part: String = s
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    if part.is_empty() {
        "_".into()
    } else {
        part
    }
}

/// The folder of `kind`'s environments under the job's `envs_dir`, created if need be,
/// absolute (it is bound into sandboxes at its own path).
fn kind_dir(job: &Job, kind: Kind) -> Result<PathBuf, EnvError> {
    let dir = job.envs_dir.join(kind.as_str());
    std::fs::create_dir_all(&dir)
        .and_then(|()| dir.canonicalize())
        .map_err(|e| EnvError::Failed(format!("cannot create the environments folder {}: {e}", dir.display())))
}

/// The pack's ref and version (`_` and `0` when the job lacks them).
fn pack_of(job: &Job) -> (&str, &str) {
    (job.pack_ref.as_deref().unwrap_or("_"), job.pack_version.as_deref().unwrap_or("0"))
}

fn is_complete(env: &Path) -> bool {
    env.join(MARKER).is_file()
}

/// The environment of `key` in `kind_dir`: the finished one, or built now by `build` (given
/// the empty temporary folder to fill) under the lock, renamed into place once complete.
/// Waits while another task or process builds it. Canceled by `cancel` while it waits;
/// `build` must itself stop on `cancel`, without leaving processes behind.
pub async fn ensure<F, Fut>(
    kind_dir: &Path,
    key: &EnvKey,
    cancel: &CancellationToken,
    build: F,
) -> Result<PathBuf, EnvError>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<(), EnvError>>,
{
    let ready = kind_dir.join(&key.name);
    if is_complete(&ready) {
        return Ok(ready);
    }
    let waiting_since = SystemTime::now();
    let _lock = lock(&kind_dir.join(format!(".{}.lock", key.name)), cancel).await?;
    if is_complete(&ready) {
        return Ok(ready);
    }
    // A build that failed while this caller waited fails it too (one failed build per
    // burst, not one per waiting execution); a caller that comes later tries again.
    let failure = kind_dir.join(format!(".{}.failed", key.name));
    if let Some(error) = failed_since(&failure, waiting_since) {
        return Err(EnvError::Failed(error));
    }
    match build_locked(kind_dir, key, &ready, build).await {
        Ok(env) => {
            let _ = std::fs::remove_file(&failure);
            Ok(env)
        }
        Err(EnvError::Failed(why)) => {
            if let Err(e) = std::fs::write(&failure, &why) {
                tracing::warn!(file = %failure.display(), error = %e, "cannot record a failed build");
            }
            Err(EnvError::Failed(why))
        }
        Err(EnvError::Canceled) => Err(EnvError::Canceled),
    }
}

/// The error of the build recorded in `failure` at or after `since`, if any.
fn failed_since(failure: &Path, since: SystemTime) -> Option<String> {
    let recorded = std::fs::metadata(failure).and_then(|m| m.modified()).ok()?;
    (recorded >= since).then(|| std::fs::read_to_string(failure).ok()).flatten()
}

/// The build itself, under the lock: leftovers removed, `build` run in a fresh temporary
/// folder, the files settled, the marker written, the folder renamed into place.
async fn build_locked<F, Fut>(kind_dir: &Path, key: &EnvKey, ready: &Path, build: F) -> Result<PathBuf, EnvError>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<(), EnvError>>,
{
    let failed = |what: &str, e: std::io::Error| EnvError::Failed(format!("{}: {what}: {e}", key.describe()));
    // Under the lock, no one else builds this one: whatever is here is left over (a
    // folder half deleted by hand, the build of a worker killed mid-way).
    let leftover = format!(".build-{}-", key.name);
    let mut stale: Vec<PathBuf> = std::fs::read_dir(kind_dir)
        .map_err(|e| failed("cannot list the environments folder", e))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&leftover))
        .map(|e| e.path())
        .collect();
    if ready.exists() {
        stale.push(ready.to_path_buf());
    }
    for dir in stale {
        remove_all(&dir).map_err(|e| failed(&format!("cannot remove the leftover {}", dir.display()), e))?;
    }
    let building = BuildDir::create(kind_dir, &leftover).map_err(|e| failed("cannot create a build folder", e))?;
    let started = Instant::now();
    build(building.path.clone()).await?;
    let seconds = started.elapsed().as_secs_f64();
    let path = building.path.clone();
    tokio::task::spawn_blocking(move || settle(&path))
        .await
        .map_err(|e| EnvError::Failed(format!("{}: settling the files failed: {e}", key.describe())))?
        .map_err(|e| failed("cannot take over the built files", e))?;
    let marker = json!({
        "kind": key.kind.as_str(),
        "pack": key.pack_ref,
        "version": key.pack_version,
        "hash": key.hash,
        "built_at": chrono::Utc::now(),
        "build_seconds": (seconds * 1000.0).round() / 1000.0,
    });
    std::fs::write(building.path.join(MARKER), format!("{marker:#}\n"))
        .map_err(|e| failed("cannot write the environment's marker", e))?;
    std::fs::rename(&building.path, ready).map_err(|e| failed("cannot move the built environment into place", e))?;
    building.keep();
    tracing::info!(env = %ready.display(), seconds, "{} built", key.describe());
    Ok(ready.to_path_buf())
}

/// The exclusive lock of one environment's build: taken without blocking a thread,
/// retried every [`LOCK_POLL`] until it is free or `cancel` fires.
async fn lock(path: &Path, cancel: &CancellationToken) -> Result<Flock<File>, EnvError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| EnvError::Failed(format!("cannot open the lock file {}: {e}", path.display())))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((f, Errno::EWOULDBLOCK | Errno::EINTR)) => file = f,
            Err((_, e)) => return Err(EnvError::Failed(format!("cannot lock {}: {e}", path.display()))),
        }
        tokio::select! {
            _ = tokio::time::sleep(LOCK_POLL) => {}
            _ = cancel.cancelled() => return Err(EnvError::Canceled),
        }
    }
}

/// A build's temporary folder, removed when dropped unless it was kept (renamed).
struct BuildDir {
    path: PathBuf,
    kept: bool,
}

impl BuildDir {
    fn create(parent: &Path, prefix: &str) -> std::io::Result<BuildDir> {
        let path = tempfile::Builder::new().prefix(prefix).rand_bytes(8).tempdir_in(parent)?.keep();
        Ok(BuildDir { path, kept: false })
    }

    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for BuildDir {
    fn drop(&mut self) {
        if !self.kept {
            if let Err(e) = remove_all(&self.path) {
                tracing::warn!(dir = %self.path.display(), error = %e, "cannot remove a failed build's folder");
            }
        }
    }
}

/// Removes `dir`; what a sandboxed build made read-only is opened up first (a service that
/// is not root cannot otherwise remove it).
fn remove_all(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            walk(dir, &mut |path, meta| {
                use std::os::unix::fs::PermissionsExt;
                if meta.is_dir() {
                    let mode = meta.permissions().mode() | 0o700;
                    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
                }
                Ok(())
            })?;
            std::fs::remove_dir_all(dir)
        }
    }
}

/// Calls `f` on `dir` and everything under it, without following symlinks.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> std::io::Result<()>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    f(dir, &meta)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            walk(&entry?.path(), f)?;
        }
    }
    Ok(())
}

/// The built files, taken back from the build's user: owned by the worker's user (when it
/// is root: the build ran as the action user), readable by all, writable by the owner
/// only, no set-id bits. The build's sandbox is gone (its PID namespace ended with it), so
/// nothing of it can race this walk.
fn settle(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let root = nix::unistd::geteuid().is_root();
    let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    walk(dir, &mut |path, meta| {
        if root {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let mode = meta.permissions().mode() & 0o777;
        let readable = if meta.is_dir() || mode & 0o100 != 0 { 0o555 } else { 0o444 };
        let wanted = ((mode | readable) & !0o022) | 0o200;
        if wanted != meta.permissions().mode() & 0o7777 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
        }
        Ok(())
    })
}

/// Runs the build `script` (`/bin/sh -c`, with `$1` the pack's directory and `$2` the build
/// folder, stdout and stderr together) in a sandbox like an action's: the job's sandbox
/// settings, network on, the pack's directory read-only and the build folder read-write.
/// `what` names the installer in errors (`pip install -r requirements.txt`).
pub(crate) async fn run_build(
    job: &Job,
    key: &EnvKey,
    pack_dir: &Path,
    build_dir: &Path,
    script: &str,
    what: &str,
    env: &[(&str, &str)],
) -> Result<(), EnvError> {
    let failed = |why: String| EnvError::Failed(format!("cannot build the {} ({what}): {why}", key.describe()));
    let mut config = job.sandbox.clone();
    config.limits.memory_mb = config.limits.memory_mb.max(BUILD_MEMORY_MB);
    if config.mode == SandboxMode::Namespaces {
        // A root service runs the build as the action user: give it the build folder.
        if let Identity::Switch(account) = identity(config.run_as.as_deref()).map_err(failed)? {
            std::os::unix::fs::chown(build_dir, Some(account.uid), Some(account.gid))
                .map_err(|e| failed(format!("cannot hand the build folder to the action user: {e}")))?;
        }
        config.bind.push(build_dir.to_path_buf());
    }
    let mut sandbox = Sandbox::prepare(&config, true, &[pack_dir.to_path_buf()])
        .map_err(|e| failed(format!("cannot sandbox the build: {e}")))?;
    let args =
        ["-c".as_ref(), script.as_ref(), "attune-env-build".as_ref(), pack_dir.as_os_str(), build_dir.as_os_str()];
    let mut cmd = sandbox.command("/bin/sh", args, pack_dir);
    cmd.stdin(Stdio::null()).envs(env.iter().copied());
    // From this async task's thread (see `attune_core::child`: the death signal).
    let spawned = sandbox.spawn(&mut cmd);
    drop(cmd);
    let mut child = spawned.map_err(|e| failed(format!("cannot start the build: {e}")))?;
    let stdout = tokio::spawn(capture(child.stdout.take().expect("stdout is piped"), OUTPUT_LIMIT, Masker::default()));
    let stderr = tokio::spawn(capture(child.stderr.take().expect("stderr is piped"), OUTPUT_LIMIT, Masker::default()));
    enum Ending {
        Exited(Option<std::process::ExitStatus>),
        TimedOut,
        Canceled,
    }
    let ending = tokio::select! {
        status = child.wait() => Ending::Exited(status.ok()),
        _ = tokio::time::sleep(BUILD_TIMEOUT) => Ending::TimedOut,
        _ = job.cancel.cancelled() => Ending::Canceled,
    };
    // Whatever the build left running goes with it, before its folder is touched.
    sandbox.signal(Signal::SIGKILL);
    let _ = child.wait().await;
    let output = |task: tokio::task::JoinHandle<crate::output::Captured>| async move {
        match tokio::time::timeout(Duration::from_secs(2), task).await {
            Ok(Ok(captured)) => (String::from_utf8_lossy(&captured.head).into_owned(), captured.tail_text()),
            _ => Default::default(),
        }
    };
    let ((out_head, out_tail), (err_head, err_tail)) = (output(stdout).await, output(stderr).await);
    let text = format!("{out_tail}{err_tail}");
    match ending {
        Ending::Exited(Some(status)) if status.success() => Ok(()),
        Ending::Canceled => Err(EnvError::Canceled),
        Ending::TimedOut => Err(failed(format!("timed out after {} s", BUILD_TIMEOUT.as_secs()))),
        Ending::Exited(status) => {
            let code = status.and_then(|s| s.code());
            let mut how = match code {
                Some(code) => format!("exit code {code}"),
                None => "killed by a signal".to_string(),
            };
            // The sign of a limit may be far from the end (a crash prints its stack after).
            let all = format!("{out_head}{err_head}{text}");
            let v8_oom = all.contains("Fatal process OOM") || all.contains("JavaScript heap out of memory");
            let limit = limit_exceeded(&config.limits, code, &all).or_else(|| {
                v8_oom.then(|| format!("exceeded its memory limit ({} MiB of address space)", config.limits.memory_mb))
            });
            if let Some(limit) = limit {
                how = format!("{how}; the build {limit}");
            }
            Err(failed(format!("{how}:\n{}", tail(&text, ERROR_TAIL))))
        }
    }
}

/// The last `max` bytes of `text`, trimmed, cut at a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let text = text.trim();
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    &text[start..]
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn keys_name_the_pack_and_change_with_every_input() {
        let a = EnvKey::new(Kind::Python, "mypack", "1.0.0", &[("requirements.txt", b"six==1.16.0\n")]);
        assert!(a.name.starts_with("mypack-1.0.0-") && a.name.len() == "mypack-1.0.0-".len() + 16, "{}", a.name);
        assert_eq!(a, EnvKey::new(Kind::Python, "mypack", "1.0.0", &[("requirements.txt", b"six==1.16.0\n")]));
        let others = [
            EnvKey::new(Kind::Node, "mypack", "1.0.0", &[("requirements.txt", b"six==1.16.0\n")]),
            EnvKey::new(Kind::Python, "mypack", "1.0.1", &[("requirements.txt", b"six==1.16.0\n")]),
            EnvKey::new(Kind::Python, "other", "1.0.0", &[("requirements.txt", b"six==1.16.0\n")]),
            EnvKey::new(Kind::Python, "mypack", "1.0.0", &[("requirements.txt", b"six==1.15.0\n")]),
            EnvKey::new(Kind::Python, "mypack", "1.0.0", &[("requirements.txt", b"six==1.16.0\n"), ("x", b"")]),
        ];
        for other in others {
            assert_ne!(a.hash, other.hash, "{other:?}");
        }
        let odd = EnvKey::new(Kind::Node, "p", "1.0/../../x y", &[]);
        assert!(odd.name.starts_with("p-1.0_.._.._x_y-"), "{}", odd.name);
        assert!(!odd.name.contains('/'));
    }

    #[tokio::test]
    async fn concurrent_callers_build_once_and_see_only_a_finished_environment() {
        let dir = tempfile::tempdir().unwrap();
        let key = EnvKey::new(Kind::Python, "p", "1", &[]);
        let builds = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (dir, key, builds) = (dir.path().to_path_buf(), key.clone(), builds.clone());
            tasks.push(tokio::spawn(async move {
                ensure(&dir, &key, &CancellationToken::new(), |build| async move {
                    builds.fetch_add(1, Ordering::SeqCst);
                    std::fs::write(build.join("half"), "").unwrap();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    std::fs::write(build.join("whole"), "").unwrap();
                    Ok(())
                })
                .await
            }));
        }
        for task in tasks {
            let env = task.await.unwrap().unwrap();
            assert!(env.join("whole").is_file() && env.join(MARKER).is_file(), "{}", env.display());
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        let marker: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(&key.name).join(MARKER)).unwrap()).unwrap();
        assert_eq!((marker["pack"].as_str(), marker["hash"].as_str()), (Some("p"), Some(key.hash.as_str())));
        let names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        assert!(!names.iter().any(|n| n.starts_with(".build-")), "{names:?}");
    }

    #[tokio::test]
    async fn a_failed_build_leaves_nothing_and_the_next_caller_tries_again() {
        let dir = tempfile::tempdir().unwrap();
        let key = EnvKey::new(Kind::Node, "p", "1", &[]);
        let failed = ensure(dir.path(), &key, &CancellationToken::new(), |build| async move {
            std::fs::create_dir(build.join("node_modules")).unwrap();
            Err(EnvError::Failed("npm said no".into()))
        })
        .await;
        assert_eq!(failed, Err(EnvError::Failed("npm said no".into())));
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(left, [format!(".{}.failed", key.name), format!(".{}.lock", key.name)], "no build folder stays");
        // A folder without the marker (half deleted by hand) is rebuilt, not used.
        std::fs::create_dir(dir.path().join(&key.name)).unwrap();
        let env = ensure(dir.path(), &key, &CancellationToken::new(), |build| async move {
            std::fs::write(build.join("ok"), "").unwrap();
            Ok(())
        })
        .await
        .unwrap();
        assert!(env.join("ok").is_file());
    }

    #[tokio::test]
    async fn the_executions_waiting_for_a_failed_build_share_its_failure() {
        let dir = tempfile::tempdir().unwrap();
        let key = EnvKey::new(Kind::Python, "p", "1", &[]);
        let builds = Arc::new(AtomicUsize::new(0));
        let attempt = |builds: Arc<AtomicUsize>| {
            let (dir, key) = (dir.path().to_path_buf(), key.clone());
            async move {
                ensure(&dir, &key, &CancellationToken::new(), |_| async move {
                    let n = builds.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Err(EnvError::Failed(format!("pip failed (build {n})")))
                })
                .await
            }
        };
        let burst: Vec<_> = (0..4).map(|_| tokio::spawn(attempt(builds.clone()))).collect();
        for task in burst {
            assert_eq!(task.await.unwrap(), Err(EnvError::Failed("pip failed (build 1)".into())));
        }
        assert_eq!(builds.load(Ordering::SeqCst), 1, "one build for the whole burst");
        // Later: tried again.
        assert_eq!(attempt(builds.clone()).await, Err(EnvError::Failed("pip failed (build 2)".into())));
    }

    #[tokio::test]
    async fn a_waiter_is_canceled_while_another_builds() {
        let dir = tempfile::tempdir().unwrap();
        let key = EnvKey::new(Kind::Python, "p", "1", &[]);
        let held = lock(&dir.path().join(format!(".{}.lock", key.name)), &CancellationToken::new()).await.unwrap();
        let cancel = CancellationToken::new();
        let waiter = {
            let (dir, key, cancel) = (dir.path().to_path_buf(), key.clone(), cancel.clone());
            tokio::spawn(async move { ensure(&dir, &key, &cancel, |_| async { Ok(()) }).await })
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(!waiter.is_finished(), "it waits for the lock");
        cancel.cancel();
        assert_eq!(waiter.await.unwrap(), Err(EnvError::Canceled));
        drop(held);
    }

    #[test]
    fn tails_are_cut_at_character_boundaries() {
        assert_eq!(tail("  abc\n", 10), "abc");
        assert_eq!(tail("xxé", 1), "");
        assert_eq!(tail("xxéy", 3), "éy");
    }
}
