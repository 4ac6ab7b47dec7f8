//! The per-run folders of sandboxed programs (`<temp dir>/attune-run-<pid namespace>-<pid>-<random>`:
//! the scratch folder and the mount points of a root service), made per program, removed
//! with it, and swept when a killed service left them behind.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The inode of the initial PID namespace (the kernel's `PROC_PID_INIT_INO`).
pub(super) const INIT_PID_NAMESPACE: u64 = 0xEFFF_FFFC;

/// The inode of the PID namespace of `process` (`self` or a pid).
pub(super) fn pid_namespace(process: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{process}/ns/pid")).map(|m| m.ino()).ok()
}

/// The start of the names of the per-run folders of process `pid` of this PID namespace:
/// `attune-run-<namespace>-<pid>-`.
pub(super) fn run_dir_prefix(pid: u32) -> String {
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
pub(super) fn make_run_dir() -> std::io::Result<PathBuf> {
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
pub(super) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            open_up(dir);
            Err(e)
        }
    }
}

/// Gives the owner rwx on every folder under `dir` (not following symlinks), so a
/// non-root service can remove what its sandboxed program left. Root needs no such help,
/// and must not chmod by path in a tree an action's user owns (a racing leftover could
/// swap a folder for a symlink to a host file).
pub(super) fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if nix::unistd::geteuid().is_root() {
        return;
    }
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

pub(super) fn c_path(path: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).expect("paths have no NUL byte")
}
