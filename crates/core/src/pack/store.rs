//! The pack store: where uploaded and git-installed packs live on the server.
//!
//! ```text
//! <data_dir>/packs/
//!   .staging/<random>/               an upload or clone being checked (removed either way)
//!   <tenant>/<ref>/<version>-<hash>/ one directory per version (hash: the content hash)
//! ```
//!
//! A version's directory is never changed once placed: a new version is a new directory,
//! and the pack row is pointed at it by the install's transaction. An execution claimed
//! before that commit keeps the directory it was given and finishes on the old code; one
//! claimed after runs the new. Old versions are removed by [`Store::prune`] — never the
//! current one nor the one it replaced, and only while no execution of the pack runs.
//!
//! Workers run actions from these directories: a worker on another host needs the same
//! data directory (a shared volume), as it needs the directories of path-loaded packs.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rand::Rng;

/// The store under one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    /// `<data_dir>/packs`, resolved.
    root: PathBuf,
}

impl Store {
    /// The store of `data_dir`, created if needed.
    pub fn open(data_dir: &Path) -> io::Result<Store> {
        let root = data_dir.join("packs");
        fs::create_dir_all(root.join(".staging"))?;
        let root = fs::canonicalize(root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh, empty staging directory; removed with what it holds when dropped.
    pub fn stage(&self) -> io::Result<Staged> {
        let name: String =
            rand::thread_rng().sample_iter(rand::distributions::Alphanumeric).take(16).map(char::from).collect();
        let dir = self.root.join(".staging").join(name);
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(Staged { dir })
    }

    /// Whether `path` is a version directory of this store (not a staging one).
    pub fn holds(&self, path: &Path) -> bool {
        path.starts_with(&self.root) && !path.starts_with(self.root.join(".staging"))
    }

    /// Where a pack's versions live.
    fn pack_dir(&self, tenant: i64, pack_ref: &str) -> PathBuf {
        self.root.join(tenant.to_string()).join(pack_ref)
    }

    /// Moves the checked pack directory `tree` (inside a staging directory) to its version
    /// directory. When that exists already (the same content was installed before) it is
    /// used as it is. The result removes a directory it created when dropped, unless kept.
    pub fn place(
        &self,
        tree: &Path,
        tenant: i64,
        pack_ref: &str,
        version: &str,
        content_hash: &str,
    ) -> io::Result<Placed> {
        let parent = self.pack_dir(tenant, pack_ref);
        fs::create_dir_all(&parent)?;
        for dir in [parent.as_path(), parent.parent().unwrap_or(&parent)] {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        }
        let dir = parent.join(version_name(version, content_hash));
        if dir.is_dir() {
            return Ok(Placed { dir, created: false, kept: false });
        }
        fs::set_permissions(tree, fs::Permissions::from_mode(0o755))?;
        match fs::rename(tree, &dir) {
            Ok(()) => Ok(Placed { dir, created: true, kept: false }),
            Err(_) if dir.is_dir() => Ok(Placed { dir, created: false, kept: false }),
            Err(e) => Err(e),
        }
    }

    /// Removes the version directories of a pack except those in `keep`; returns them.
    /// The caller makes sure no execution runs from them.
    pub fn prune(&self, tenant: i64, pack_ref: &str, keep: &[&Path]) -> io::Result<Vec<PathBuf>> {
        let parent = self.pack_dir(tenant, pack_ref);
        let entries = match fs::read_dir(&parent) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut removed = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if keep.iter().any(|k| *k == path) || !path.is_dir() {
                continue;
            }
            fs::remove_dir_all(&path)?;
            removed.push(path);
        }
        removed.sort();
        Ok(removed)
    }
}

/// `<version>-<first 16 hex digits of the content hash>`, the version with anything but
/// `A-Za-z0-9._+-` replaced by `_`.
fn version_name(version: &str, content_hash: &str) -> String {
    let version: String =
        version.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect();
    let version = version.trim_start_matches('.');
    let hash = content_hash.get(..16).unwrap_or(content_hash);
    format!("{}-{hash}", if version.is_empty() { "0" } else { version })
}

/// A staging directory, removed when dropped.
#[derive(Debug)]
pub struct Staged {
    dir: PathBuf,
}

impl Staged {
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a pack staging directory");
            }
        }
    }
}

/// A version directory an install is about to use. One it created is removed when this
/// is dropped, unless [`Placed::keep`] was called: an install that fails (or is abandoned)
/// leaves nothing behind.
#[derive(Debug)]
pub struct Placed {
    pub dir: PathBuf,
    /// False when the directory was there already (the same content, installed before).
    pub created: bool,
    kept: bool,
}

impl Placed {
    /// The install committed: the directory stays.
    pub fn keep(mut self) -> PathBuf {
        self.kept = true;
        self.dir.clone()
    }
}

impl Drop for Placed {
    fn drop(&mut self) {
        if self.created && !self.kept {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove an unused pack version");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_are_safe_folder_names() {
        let hash = "0123456789abcdef0123456789abcdef";
        assert_eq!(version_name("1.2.0", hash), "1.2.0-0123456789abcdef");
        assert_eq!(version_name("../x y", hash), "_x_y-0123456789abcdef");
        assert_eq!(version_name("..", hash), "0-0123456789abcdef");
    }

    #[test]
    fn placing_is_undone_unless_kept_and_pruning_keeps_what_it_is_told() {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).unwrap();
        let place = |content: &str, hash: &str| {
            let staged = store.stage().unwrap();
            fs::write(staged.path().join("pack.yaml"), content).unwrap();
            store.place(staged.path(), 7, "p", "1.0.0", hash).unwrap()
        };
        let dropped = place("a", "aaaaaaaaaaaaaaaaaaaa");
        let dir = dropped.dir.clone();
        assert!(dir.join("pack.yaml").is_file() && store.holds(&dir));
        drop(dropped);
        assert!(!dir.exists(), "an install that did not commit leaves nothing");
        let one = place("a", "aaaaaaaaaaaaaaaaaaaa").keep();
        let again = place("a", "aaaaaaaaaaaaaaaaaaaa");
        assert!(!again.created);
        drop(again);
        assert!(one.is_dir(), "a directory used before is never removed by a failed install");
        let two = place("b", "bbbbbbbbbbbbbbbbbbbb").keep();
        let three = place("c", "cccccccccccccccccccc").keep();
        let removed = store.prune(7, "p", &[&two, &three]).unwrap();
        assert_eq!(removed, vec![one]);
        assert!(two.is_dir() && three.is_dir());
        assert_eq!(fs::read_dir(store.root().join(".staging")).unwrap().count(), 0, "staging is cleaned");
    }
}
