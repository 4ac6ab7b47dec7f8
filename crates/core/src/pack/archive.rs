//! Pack archives: a `.tar.gz` of a pack directory unpacked into a fresh, empty directory,
//! and the same guards applied to a tree that arrived another way (a git checkout).
//!
//! Unpacking is written here entry by entry rather than left to a library's `unpack`, so
//! that nothing in an archive can write or point outside the directory it is unpacked into:
//!
//! - entry names that are absolute or climb with `..` are refused;
//! - a folder on an entry's way that is not a real folder of the archive (a file, or a
//!   symbolic link unpacked earlier) is refused, so no entry is ever written through a link;
//!   files are created new (an entry twice is refused) without following a link;
//! - symbolic links must lead to something inside the pack, judged before they are made
//!   (absolute targets, or targets climbing out of the archive) and again once everything is
//!   unpacked, with every link followed; hard links must name a file of the archive
//!   unpacked before them, and become copies;
//! - device files, FIFOs and any other kind of entry are refused;
//! - at most `max_files` entries and `max_bytes` bytes of file content are written (an
//!   archive that expands enormously stops there).
//!
//! Files get mode 0644, or 0755 when the archive marks them executable; folders 0755:
//! owners, set-id bits and times of the archive are not kept. Every message names the entry
//! as the archive names it (at most [`NAME_CHARS`] characters of it) and says what is wrong.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::quoting;

/// How much an archive (or a checkout) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries: files, folders and links.
    pub max_files: u64,
    /// Bytes of file content, all files together.
    pub max_bytes: u64,
}

impl Limits {
    pub fn from_config(config: &crate::config::PacksConfig) -> Limits {
        Limits { max_files: config.max_files, max_bytes: config.max_unpacked_bytes }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not a gzip-compressed tar archive, or one cut short.
    #[error("the body is not a gzip-compressed tar archive (.tar.gz): {0}")]
    Malformed(String),
    /// An entry that may not be unpacked.
    #[error("{entry}: {problem}")]
    Refused { entry: String, problem: String },
    /// More entries or bytes than [`Limits`] allow; the message names the setting.
    #[error("{0}")]
    TooLarge(String),
    /// The server could not write the files (a full disk...).
    #[error("cannot unpack the pack on the server: {0}")]
    Io(#[from] io::Error),
}

/// The most characters of an entry name a message quotes.
pub const NAME_CHARS: usize = 120;

fn refused(entry: &str, problem: impl Into<String>) -> ArchiveError {
    ArchiveError::Refused { entry: quoting::excerpt(entry, NAME_CHARS).into_owned(), problem: problem.into() }
}

fn too_many(limits: &Limits) -> ArchiveError {
    ArchiveError::TooLarge(format!(
        "the pack holds more than {} entries (packs.max_files, ATTUNE_PACK_MAX_FILES)",
        limits.max_files
    ))
}

fn too_big(limits: &Limits) -> ArchiveError {
    ArchiveError::TooLarge(format!(
        "the pack unpacks to more than {} bytes (packs.max_unpacked_bytes, ATTUNE_PACK_MAX_UNPACKED_BYTES)",
        limits.max_bytes
    ))
}

/// What was unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unpacked {
    pub entries: u64,
    pub bytes: u64,
}

/// Unpacks the `.tar.gz` read from `reader` into `dest`, an existing empty directory.
/// On an error `dest` holds part of the archive: the caller removes it.
pub fn unpack(reader: impl Read, dest: &Path, limits: Limits) -> Result<Unpacked, ArchiveError> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let malformed = |e: io::Error| ArchiveError::Malformed(e.to_string());
    let mut count = Unpacked::default();
    let mut links = Vec::new();
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        let kind = entry.header().entry_type();
        // A pax global header (git archive writes one with the commit id) is not an entry.
        if kind == EntryType::XGlobalHeader {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(rel) = relative(&name)? else {
            continue; // "./": the archive's root itself
        };
        count.entries += 1;
        if count.entries > limits.max_files {
            return Err(too_many(&limits));
        }
        let target = dest.join(&rel);
        match kind {
            EntryType::Directory => make_dirs(dest, &rel, &name)?,
            EntryType::Regular | EntryType::Continuous => {
                parent_dirs(dest, &rel, &name)?;
                let mode = if entry.header().mode().unwrap_or(0o644) & 0o111 != 0 { 0o755 } else { 0o644 };
                let mut file = create_new(&target, mode, &name)?;
                let room = limits.max_bytes - count.bytes;
                count.bytes += copy_limited(&mut entry, &mut file, room, &limits)?;
            }
            EntryType::Symlink => {
                let to =
                    entry.link_name_bytes().ok_or_else(|| refused(&name, "is a symbolic link without a target"))?;
                let to = Path::new(std::ffi::OsStr::from_bytes(&to)).to_path_buf();
                if to.as_os_str().is_empty() {
                    return Err(refused(&name, "is a symbolic link without a target"));
                }
                if leaves(&rel, &to) {
                    return Err(refused(&name, "is a symbolic link leading outside the pack; refused"));
                }
                parent_dirs(dest, &rel, &name)?;
                std::os::unix::fs::symlink(&to, &target).map_err(|e| exists_or(e, &name))?;
                links.push((name, target));
            }
            EntryType::Link => {
                let to = entry.link_name_bytes().ok_or_else(|| refused(&name, "is a hard link without a target"))?;
                let to_name = String::from_utf8_lossy(&to).into_owned();
                let source =
                    match relative(&to_name) {
                        Ok(Some(source)) if plain_file(dest, &source) => dest.join(source),
                        _ => return Err(refused(
                            &name,
                            "is a hard link to something that is not a file unpacked before it in the archive; refused",
                        )),
                    };
                parent_dirs(dest, &rel, &name)?;
                let mode = fs::metadata(&source)?.permissions().mode() & 0o777;
                let mut file = create_new(&target, mode, &name)?;
                let room = limits.max_bytes - count.bytes;
                count.bytes += copy_limited(&mut File::open(&source)?, &mut file, room, &limits)?;
            }
            EntryType::Char | EntryType::Block => return Err(refused(&name, "is a device file; refused")),
            EntryType::Fifo => return Err(refused(&name, "is a FIFO (named pipe); refused")),
            other => {
                return Err(refused(
                    &name,
                    format!(
                        "is a tar entry of type {:?}, which a pack may not hold (only files, folders and links)",
                        other.as_byte() as char
                    ),
                ))
            }
        }
    }
    let base = fs::canonicalize(dest)?;
    for (name, link) in links {
        match fs::canonicalize(&link) {
            Ok(real) if real.starts_with(&base) => {}
            Ok(_) => return Err(refused(&name, "is a symbolic link leading outside the pack; refused")),
            Err(_) => return Err(refused(&name, "is a symbolic link to nothing in the pack; refused")),
        }
    }
    Ok(count)
}

/// Checks a tree that arrived another way (a git checkout) against the same rules: at most
/// `limits`, only files, folders and links, links leading inside it. Entries named in
/// `skip` at the top (`.git`) are not counted. Files and folders get the modes unpacked
/// ones get (whatever the umask they were written with).
pub fn check_tree(dir: &Path, limits: Limits, skip: &[&str]) -> Result<Unpacked, ArchiveError> {
    let base = fs::canonicalize(dir)?;
    let mut count = Unpacked::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder)? {
            let entry = entry?;
            let path = entry.path();
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            if folder == dir && skip.iter().any(|s| entry.file_name() == *s) {
                continue;
            }
            let name = rel.to_string_lossy().into_owned();
            count.entries += 1;
            if count.entries > limits.max_files {
                return Err(too_many(&limits));
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
                pending.push(path);
            } else if kind.is_file() {
                let meta = entry.metadata()?;
                count.bytes += meta.len();
                if count.bytes > limits.max_bytes {
                    return Err(too_big(&limits));
                }
                let mode = if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 };
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
            } else if kind.is_symlink() {
                match fs::canonicalize(&path) {
                    Ok(real) if real.starts_with(&base) => {}
                    Ok(_) => return Err(refused(&name, "is a symbolic link leading outside the pack; refused")),
                    Err(_) => return Err(refused(&name, "is a symbolic link to nothing in the pack; refused")),
                }
            } else {
                return Err(refused(&name, "is neither a file, a folder nor a link; refused"));
            }
        }
    }
    Ok(count)
}

/// The pack's directory in an unpacked tree: the tree itself when it has a pack.yaml,
/// else its only entry when that is a folder (archives made of `mypack/...`).
pub fn pack_root(tree: &Path) -> PathBuf {
    if fs::symlink_metadata(tree.join("pack.yaml")).is_ok() {
        return tree.to_path_buf();
    }
    let entries: Vec<_> = match fs::read_dir(tree) {
        Ok(entries) => entries.filter_map(Result::ok).collect(),
        Err(_) => return tree.to_path_buf(),
    };
    match entries.as_slice() {
        [only] if only.file_type().is_ok_and(|t| t.is_dir()) => only.path(),
        _ => tree.to_path_buf(),
    }
}

/// The entry name as a relative path of normal components; None for the root itself.
/// Absolute names and names with `..` are refused.
fn relative(name: &str) -> Result<Option<PathBuf>, ArchiveError> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(name, "is an absolute path; entries must be relative to the pack"))
            }
            Component::ParentDir => {
                return Err(refused(name, "climbs out of the pack with `..`; refused"));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Whether a link at `rel` with target `to` leads out of the archive, judged on the
/// names alone (the links already unpacked are followed in the final check).
fn leaves(rel: &Path, to: &Path) -> bool {
    let mut depth = rel.components().count() as i64 - 1;
    for c in to.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::RootDir | Component::Prefix(_) => return true,
        }
    }
    false
}

/// Makes the folders of `rel` (all of it), refusing any on the way that exists as
/// something other than a real folder.
fn make_dirs(dest: &Path, rel: &Path, name: &str) -> Result<(), ArchiveError> {
    let mut path = dest.to_path_buf();
    for part in rel.components() {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(refused(
                    name,
                    format!(
                        "its folder {:?} is a file or a symbolic link earlier in the archive; refused",
                        quoting::excerpt(&path.strip_prefix(dest).unwrap_or(&path).to_string_lossy(), NAME_CHARS)
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(|e| exists_or(e, name))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(exists_or(e, name)),
        }
    }
    Ok(())
}

/// The folders an entry goes in.
fn parent_dirs(dest: &Path, rel: &Path, name: &str) -> Result<(), ArchiveError> {
    match rel.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => make_dirs(dest, parent, name),
        _ => Ok(()),
    }
}

/// Whether `rel` is a regular file under `dest` reached through real folders only.
fn plain_file(dest: &Path, rel: &Path) -> bool {
    let mut path = dest.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if i + 1 == parts.len() => return m.file_type().is_file(),
            Ok(m) if m.file_type().is_dir() => {}
            _ => return false,
        }
    }
    false
}

/// A new file (never an existing one, never through a link) with `mode`.
fn create_new(path: &Path, mode: u32, name: &str) -> Result<File, ArchiveError> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(|e| exists_or(e, name))?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// An error creating an entry: the server's when its disk is full or failing, else the
/// entry's (a name too long for the file system, ...).
fn exists_or(e: io::Error, name: &str) -> ArchiveError {
    use nix::errno::Errno;
    if e.kind() == io::ErrorKind::AlreadyExists {
        return refused(name, "appears more than once in the archive (or is a folder too); refused");
    }
    let server = [Errno::ENOSPC, Errno::EDQUOT, Errno::EIO, Errno::EROFS, Errno::ENOMEM, Errno::EMFILE, Errno::ENFILE];
    match e.raw_os_error() {
        Some(code) if server.iter().any(|s| *s as i32 == code) => e.into(),
        Some(_) => refused(name, format!("cannot be unpacked: {e}")),
        None => e.into(),
    }
}

/// Copies `from` into `to`, at most `room` bytes: more is [`ArchiveError::TooLarge`]. A
/// read error is the archive's (malformed), a write error the server's.
fn copy_limited(from: &mut impl Read, to: &mut File, room: u64, limits: &Limits) -> Result<u64, ArchiveError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(|e| ArchiveError::Malformed(e.to_string()))?;
        if n == 0 {
            return Ok(written);
        }
        written += n as u64;
        if written > room {
            return Err(too_big(limits));
        }
        to.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_judged_by_their_components() {
        assert_eq!(relative("./").unwrap(), None);
        assert_eq!(relative("./a/b/").unwrap(), Some(PathBuf::from("a/b")));
        assert!(matches!(relative("/etc/passwd"), Err(ArchiveError::Refused { .. })));
        assert!(matches!(relative("a/../../x"), Err(ArchiveError::Refused { .. })));
        assert!(matches!(relative("a/.."), Err(ArchiveError::Refused { .. })));
    }

    #[test]
    fn a_name_the_file_system_cannot_hold_is_the_entrys_fault() {
        let dest = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        // A GNU long name: 300 characters in one component.
        builder.append_data(&mut h, format!("actions/{}", "x".repeat(300)), &b"x"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let limits = Limits { max_files: 10, max_bytes: 1000 };
        match unpack(&gz.finish().unwrap()[..], dest.path(), limits) {
            Err(ArchiveError::Refused { entry, problem }) => {
                assert!(
                    entry.starts_with("actions/xxx") && problem.contains("cannot be unpacked"),
                    "{entry}: {problem}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn link_targets_may_not_climb_out() {
        assert!(!leaves(Path::new("actions/run.sh"), Path::new("../lib/run.sh")));
        assert!(!leaves(Path::new("a/b/c"), Path::new("../../x")));
        assert!(leaves(Path::new("actions/run.sh"), Path::new("../../etc/passwd")));
        assert!(leaves(Path::new("run.sh"), Path::new("..")));
        assert!(leaves(Path::new("run.sh"), Path::new("/etc/passwd")));
        assert!(leaves(Path::new("a/b"), Path::new("x/../../..")));
    }
}
