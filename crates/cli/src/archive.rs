//! `attune pack install DIR`: the pack directory as a `.tar.gz`, the body of
//! `POST /api/v1/packs/upload` (or of a reload, for a new version).
//!
//! Entries are relative to the pack (`pack.yaml`, `actions/hello.sh`), with their modes (an
//! executable script stays executable); symbolic links are kept as links (the server
//! refuses those leading out of the pack, naming them). Left out: version-control folders
//! and what the server builds itself or a machine leaves behind (`.git`, `node_modules`,
//! `__pycache__`, `.venv`), which would only make the upload larger.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::CliError;

/// Folder names never packed.
const SKIPPED: &[&str] =
    &[".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache"];

/// The pack's ref, read from `DIR/pack.yaml`.
pub fn pack_ref(dir: &Path) -> Result<String, CliError> {
    let path = dir.join("pack.yaml");
    let text = fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CliError::usage(format!(
                "{} has no pack.yaml: a pack directory holds pack.yaml (ref, version) and actions/, triggers/, rules/ \
                 (see docs/pack-authoring.md)",
                dir.display()
            ))
        } else {
            CliError::usage(format!("cannot read {}: {e}", path.display()))
        }
    })?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| CliError::usage(format!("{} is not valid YAML: {e}", path.display())))?;
    doc.get("ref").and_then(|r| r.as_str()).map(str::to_string).ok_or_else(|| {
        CliError::usage(format!("{}: ref: missing (the pack's name, e.g. `ref: mypack`)", path.display()))
    })
}

/// A gzip-compressed tar of `dir`'s content.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>, CliError> {
    let meta = fs::metadata(dir).map_err(|e| CliError::usage(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(CliError::usage(format!(
            "{} is not a directory: `attune pack install` takes a pack directory (`attune pack upload` takes a .tar.gz)",
            dir.display()
        )));
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    add_dir(&mut builder, dir, Path::new(""))
        .map_err(|e| CliError::usage(format!("cannot pack {}: {e}", dir.display())))?;
    let tar = builder.into_inner().map_err(|e| CliError::usage(format!("cannot pack {}: {e}", dir.display())))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).and_then(|_| gz.finish()).map_err(|e| CliError::usage(format!("cannot compress the pack: {e}")))
}

fn add_dir(builder: &mut tar::Builder<Vec<u8>>, dir: &Path, rel: &Path) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    // The same directory gives the same archive (and so the same content hash).
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let (path, rel_path) = (entry.path(), rel.join(&name));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if SKIPPED.iter().any(|s| name == *s) {
                continue;
            }
            builder.append_dir(&rel_path, &path)?;
            add_dir(builder, &path, &rel_path)?;
        } else if kind.is_file() || kind.is_symlink() {
            builder.append_path_with_name(&path, &rel_path)?;
        }
        // Sockets, FIFOs and devices are not part of a pack.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn packs_files_with_modes_and_skips_vcs_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("pack.yaml"), "ref: demo\nversion: 1.0.0\n").unwrap();
        fs::create_dir_all(root.join("actions")).unwrap();
        fs::write(root.join("actions/hi.sh"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("actions/hi.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(root.join(".git/objects")).unwrap();
        fs::write(root.join(".git/HEAD"), "ref").unwrap();
        assert_eq!(pack_ref(root).unwrap(), "demo");

        let bytes = pack_dir(root).unwrap();
        let mut gz = flate2::read::GzDecoder::new(&bytes[..]);
        let mut tar = Vec::new();
        gz.read_to_end(&mut tar).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if path == "actions/hi.sh" {
                assert_eq!(entry.header().mode().unwrap() & 0o777, 0o755);
            }
            seen.push(path);
        }
        assert_eq!(seen, ["actions", "actions/hi.sh", "pack.yaml"]);
    }

    #[test]
    fn a_directory_without_pack_yaml_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = pack_ref(dir.path()).unwrap_err().to_string();
        assert!(e.contains("has no pack.yaml"), "{e}");
    }
}
