//! Reads a pack directory:
//!
//! ```text
//! mypack/
//!   pack.yaml            ref, label, version, description
//!   actions/NAME.yaml    entry_point relative to actions/
//!   triggers/NAME.yaml
//!   sensors/NAME.yaml    entry_point relative to sensors/
//!   rules/NAME.yaml
//!   workflows/NAME.yaml  referenced by an action with `workflow: NAME`
//! ```
//!
//! Loading is all-or-nothing: every file is checked, every problem is collected, and a
//! pack with one bad file yields no definition at all.
//!
//! Only the pack's own files are read: every file (and entry point) is resolved first, and
//! one that is not inside the pack directory once symbolic links are followed is refused
//! with a message naming it — its target is neither read nor named. Messages never quote
//! a file's content beyond a short excerpt: YAML type errors name the kind of value, not
//! the value, and quoted names are cut to [`QUOTE_CHARS`] characters.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::spec::{
    ActionDef, ActionSpec, PackMeta, PackSpec, RuleDef, RuleSpec, SensorDef, SensorSpec, SpecError, TriggerDef,
    TriggerSpec,
};
use super::{FileError, PackError};
use crate::domain::RunnerType;
use crate::quoting;

/// A pack read from disk and checked.
#[derive(Debug, Clone)]
pub struct PackDefinition {
    pub dir: PathBuf,
    pub meta: PackMeta,
    pub actions: Vec<ActionDef>,
    pub triggers: Vec<TriggerDef>,
    pub sensors: Vec<SensorDef>,
    pub rules: Vec<RuleDef>,
    /// SHA-256 over every file's relative path and content: unchanged packs skip reloading.
    pub content_hash: String,
    /// For rules: the file each definition came from, to name it in install errors.
    pub rule_files: BTreeMap<String, PathBuf>,
}

/// The most characters of a file's content a message quotes (a field name, a value).
pub const QUOTE_CHARS: usize = 40;

/// The largest definition file read (YAML files are small; a bigger one is a mistake).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and checks the pack in `dir`.
pub fn load(dir: &Path) -> Result<PackDefinition, PackError> {
    load_checked(dir, None)
}

/// Like [`load`], for a directory a tenant named: once resolved (symbolic links and `..`
/// followed), it must lie under one of `roots` (resolved too). The caller checks this
/// first to answer precisely; this check is the one made on the directory actually read.
pub fn load_within(dir: &Path, roots: &[PathBuf]) -> Result<PackDefinition, PackError> {
    load_checked(dir, Some(roots))
}

fn load_checked(dir: &Path, roots: Option<&[PathBuf]>) -> Result<PackDefinition, PackError> {
    let mut errors = Vec::new();
    let pack_file = dir.join("pack.yaml");
    if !dir.is_dir() {
        return Err(PackError::invalid(dir, None, "not a directory"));
    }
    let base = fs::canonicalize(dir).map_err(|e| PackError::invalid(dir, None, format!("cannot resolve: {e}")))?;
    if let Some(roots) = roots {
        if !roots.iter().filter_map(|r| fs::canonicalize(r).ok()).any(|r| base.starts_with(r)) {
            return Err(PackError::invalid(dir, None, "is not under the directories packs may be loaded from"));
        }
    }
    let files = PackFiles { base };
    if !pack_file.is_file() && !pack_file.is_symlink() {
        return Err(PackError::invalid(
            &pack_file,
            None,
            "missing pack.yaml: every pack directory needs one (ref, version, description)",
        ));
    }
    let meta =
        match files.read_yaml::<PackSpec>(&pack_file).and_then(|spec| spec.check().map_err(|e| at(&pack_file, e))) {
            Ok(meta) => meta,
            Err(e) => return Err(PackError::Invalid(vec![e])),
        };
    let pack = meta.pack_ref.clone();

    let mut actions = Vec::new();
    for file in files.yaml_files(&dir.join("actions"), &mut errors) {
        let result = files.read_yaml::<ActionSpec>(&file).and_then(|mut spec| {
            files.resolve_workflow_file(dir, &file, &mut spec)?;
            let def = spec.check(&pack, stem(&file).as_deref()).map_err(|e| at(&file, e))?;
            // `file.py:function` (a warm python action) names the file before the `:`.
            let entry_point = match (def.runner_type, def.entry_point.as_deref()) {
                (RunnerType::Python, Some(ep)) => Some(python_entry_function(ep).map_or(ep, |(file, _)| file)),
                (_, ep) => ep,
            };
            files.check_entry_point(&dir.join("actions"), &file, entry_point, def.runner_type)?;
            Ok(def)
        });
        match result {
            Ok(def) => actions.push((file, def)),
            Err(e) => errors.push(e),
        }
    }
    let mut triggers = Vec::new();
    for file in files.yaml_files(&dir.join("triggers"), &mut errors) {
        match files
            .read_yaml::<TriggerSpec>(&file)
            .and_then(|spec| spec.check(&pack, stem(&file).as_deref()).map_err(|e| at(&file, e)))
        {
            Ok(def) => triggers.push((file, def)),
            Err(e) => errors.push(e),
        }
    }
    let mut sensors = Vec::new();
    for file in files.yaml_files(&dir.join("sensors"), &mut errors) {
        let result = files.read_yaml::<SensorSpec>(&file).and_then(|spec| {
            let def = spec.check(&pack, stem(&file).as_deref()).map_err(|e| at(&file, e))?;
            files.check_entry_point(&dir.join("sensors"), &file, Some(&def.entry_point), def.runner_type)?;
            Ok(def)
        });
        match result {
            Ok(def) => sensors.push((file, def)),
            Err(e) => errors.push(e),
        }
    }
    let mut rules = Vec::new();
    for file in files.yaml_files(&dir.join("rules"), &mut errors) {
        match files
            .read_yaml::<RuleSpec>(&file)
            .and_then(|spec| spec.check(&pack, stem(&file).as_deref()).map_err(|e| at(&file, e)))
        {
            Ok(def) => rules.push((file, def)),
            Err(e) => errors.push(e),
        }
    }

    no_duplicates(&actions, |d| d.action_ref.to_string(), &mut errors);
    no_duplicates(&triggers, |d| d.trigger_ref.to_string(), &mut errors);
    no_duplicates(&sensors, |d| d.sensor_ref.to_string(), &mut errors);
    no_duplicates(&rules, |d| d.rule_ref.to_string(), &mut errors);

    // A sensor's trigger must be one of this pack's triggers (it is the pack's own ingress).
    let trigger_refs: HashSet<String> = triggers.iter().map(|(_, t)| t.trigger_ref.to_string()).collect();
    for (file, sensor) in &sensors {
        if !trigger_refs.contains(sensor.trigger.as_str()) {
            errors.push(FileError {
                file: file.clone(),
                field: Some("trigger".into()),
                message: format!("trigger {:?} is not defined in this pack's triggers/", sensor.trigger.as_str()),
            });
        }
    }

    if !errors.is_empty() {
        errors.sort_by(|a, b| a.file.cmp(&b.file));
        return Err(PackError::Invalid(errors));
    }
    let content_hash = files.hash(dir).map_err(|e| PackError::Invalid(vec![e]))?;
    let rule_files = rules.iter().map(|(f, r)| (r.rule_ref.to_string(), f.clone())).collect();
    Ok(PackDefinition {
        dir: dir.to_path_buf(),
        meta,
        actions: actions.into_iter().map(|(_, d)| d).collect(),
        triggers: triggers.into_iter().map(|(_, d)| d).collect(),
        sensors: sensors.into_iter().map(|(_, d)| d).collect(),
        rules: rules.into_iter().map(|(_, d)| d).collect(),
        content_hash,
        rule_files,
    })
}

fn at(file: &Path, e: SpecError) -> FileError {
    FileError { file: file.to_path_buf(), field: Some(e.field), message: clip_quoted(&e.message) }
}

fn refused(file: &Path, field: Option<&str>, message: impl Into<String>) -> FileError {
    FileError { file: file.to_path_buf(), field: field.map(str::to_string), message: message.into() }
}

/// `s` cut to [`QUOTE_CHARS`] characters, with an ellipsis when cut.
fn short(s: &str) -> Cow<'_, str> {
    quoting::excerpt(s, QUOTE_CHARS)
}

/// `message` with each quoted span cut to a [`short`] excerpt: the validation messages
/// quote the file's values.
fn clip_quoted(message: &str) -> String {
    quoting::clip_quoted(message, QUOTE_CHARS)
}

/// A YAML error as a message that does not quote the file: of serde's `invalid type:
/// string "<the whole file>", expected ...` only the kind of value is kept, and any other
/// quoted span (a field name) is cut short. Syntax errors say where, never what.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(at) = rest.find(marker) {
            let after = &rest[at + marker.len()..];
            let (unexpected, tail) = after.split_once(", expected").map_or((after, ""), |(u, t)| (u, t));
            // `string "..."`, `integer `5``, `map`, ...: the words before the value.
            let kind = unexpected.split(['"', '`']).next().unwrap_or("").trim();
            out.push_str(&rest[..at]);
            out.push_str(marker);
            out.push_str(if kind.is_empty() { "a value" } else { kind });
            if !tail.is_empty() || after.contains(", expected") {
                out.push_str(", expected");
            }
            rest = tail;
            break;
        }
    }
    out.push_str(rest);
    let message = clip_quoted(&out);
    match e.location() {
        Some(loc) if !message.contains("line") => format!("{message} (line {}, column {})", loc.line(), loc.column()),
        _ => message,
    }
}

fn stem(file: &Path) -> Option<String> {
    file.file_stem().and_then(|s| s.to_str()).map(str::to_string)
}

/// Reads the files of one pack directory, and only them.
struct PackFiles {
    /// The pack directory, resolved.
    base: PathBuf,
}

impl PackFiles {
    /// Refuses `path` unless, with every symbolic link followed, it lies inside the pack.
    /// The message names `path` only: where a link leads is not told.
    fn inside(&self, path: &Path, field: Option<&str>) -> Result<PathBuf, FileError> {
        let real = fs::canonicalize(path).map_err(|e| refused(path, field, format!("cannot resolve: {e}")))?;
        if real.starts_with(&self.base) {
            Ok(real)
        } else {
            Err(refused(path, field, "is a symbolic link leading outside the pack directory; refused"))
        }
    }

    /// Opens a regular file of the pack for reading (without blocking on a FIFO), checking
    /// the file actually opened too, so a link swapped in after the check is caught.
    fn open(&self, path: &Path) -> Result<File, FileError> {
        let real = self.inside(path, None)?;
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&real)
            .map_err(|e| refused(path, None, format!("cannot read: {e}")))?;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            if let Ok(opened) = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
                if !opened.starts_with(&self.base) {
                    return Err(refused(path, None, "is a symbolic link leading outside the pack directory; refused"));
                }
            }
        }
        let meta = file.metadata().map_err(|e| refused(path, None, format!("cannot read: {e}")))?;
        if !meta.is_file() {
            return Err(refused(path, None, "is not a regular file; refused"));
        }
        Ok(file)
    }

    /// `*.yaml` / `*.yml` entries of a sub-directory (symbolic links included, to be
    /// checked when read), sorted; a missing directory is empty.
    fn yaml_files(&self, dir: &Path, errors: &mut Vec<FileError>) -> Vec<PathBuf> {
        if !dir.exists() && !dir.is_symlink() {
            return Vec::new();
        }
        if let Err(e) = self.inside(dir, None) {
            errors.push(e);
            return Vec::new();
        }
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                errors.push(refused(dir, None, format!("cannot read directory: {e}")));
                return Vec::new();
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink() || t.is_file()))
            .map(|e| e.path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect();
        files.sort();
        files
    }

    /// Parses one YAML file of the pack. Syntax errors carry "line L column C".
    fn read_yaml<T: DeserializeOwned>(&self, path: &Path) -> Result<T, FileError> {
        let file = self.open(path)?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => refused(path, None, "is not UTF-8 text"),
            _ => refused(path, None, format!("cannot read: {e}")),
        })?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(refused(path, None, format!("is larger than {} KiB", MAX_FILE_BYTES / 1024)));
        }
        serde_yaml::from_str(&text).map_err(|e| refused(path, None, format!("invalid YAML: {}", yaml_message(&e))))
    }

    /// `workflow: NAME` in a pack file names `workflows/NAME.yaml`; it is read into the
    /// action as an inline definition so the database holds what runs.
    fn resolve_workflow_file(&self, dir: &Path, action_file: &Path, spec: &mut ActionSpec) -> Result<(), FileError> {
        let Some(Value::String(name)) = &spec.workflow else {
            return Ok(());
        };
        let name = name.trim_end_matches(".yaml").trim_end_matches(".yml");
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(refused(
                action_file,
                Some("workflow"),
                format!("{:?} must name a file in workflows/ (without directories)", short(name)),
            ));
        }
        let candidates =
            [dir.join("workflows").join(format!("{name}.yaml")), dir.join("workflows").join(format!("{name}.yml"))];
        let Some(file) = candidates.iter().find(|p| p.is_file() || p.is_symlink()) else {
            return Err(refused(
                action_file,
                Some("workflow"),
                format!("workflows/{}.yaml does not exist", short(name)),
            ));
        };
        let definition: Value = self.read_yaml(file)?;
        super::spec::check_workflow(&definition).map_err(|e| at(file, e))?;
        spec.workflow = Some(definition);
        Ok(())
    }

    /// An entry point must be a file of the pack (the worker runs it from there).
    fn check_entry_point(
        &self,
        base: &Path,
        file: &Path,
        entry_point: Option<&str>,
        runner: RunnerType,
    ) -> Result<(), FileError> {
        let Some(ep) = entry_point else { return Ok(()) };
        // Builtin entry points name an in-process function, not a file.
        if runner == RunnerType::Builtin {
            return Ok(());
        }
        let path = base.join(ep);
        let missing =
            || refused(file, Some("entry_point"), format!("{:?} does not exist in {}", short(ep), base.display()));
        if !path.exists() && !path.is_symlink() {
            return Err(missing());
        }
        let real = self.inside(&path, None).map_err(|_| {
            refused(
                file,
                Some("entry_point"),
                format!("{:?} is a symbolic link leading outside the pack directory; refused", short(ep)),
            )
        })?;
        if !real.is_file() {
            return Err(missing());
        }
        Ok(())
    }

    /// SHA-256 over every file's path relative to `dir` and content; links inside the pack
    /// count by where they lead, links out of it are refused.
    fn hash(&self, dir: &Path) -> Result<String, FileError> {
        let mut files = Vec::new();
        self.walk(dir, dir, &mut files)?;
        files.sort();
        let mut hasher = Sha256::new();
        for (rel, entry) in files {
            hasher.update(rel.as_bytes());
            hasher.update([0]);
            match entry {
                Entry::File(path) => {
                    let mut file = self.open(&path)?;
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = file.read(&mut buf).map_err(|e| refused(&path, None, format!("cannot read: {e}")))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                }
                Entry::LinkedDir(target) => {
                    hasher.update(b"-> ");
                    hasher.update(target.as_bytes());
                }
            }
            hasher.update([0]);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    fn walk(&self, top: &Path, dir: &Path, out: &mut Vec<(String, Entry)>) -> Result<(), FileError> {
        fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
            move |e| refused(path, None, format!("cannot read the pack: {e}"))
        }
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Environments built for the pack are not part of its content.
            if name.starts_with('.') || name == "node_modules" || name == "__pycache__" {
                continue;
            }
            let rel = path.strip_prefix(top).unwrap_or(&path).to_string_lossy().to_string();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_symlink() {
                let real = self.inside(&path, None)?;
                if real.is_dir() {
                    // Not descended into (a link to a parent would never end).
                    let target = real.strip_prefix(&self.base).unwrap_or(Path::new("")).to_string_lossy().to_string();
                    out.push((rel, Entry::LinkedDir(target)));
                } else if real.is_file() {
                    out.push((rel, Entry::File(path)));
                }
            } else if kind.is_dir() {
                self.walk(top, &path, out)?;
            } else if kind.is_file() {
                out.push((rel, Entry::File(path)));
            }
        }
        Ok(())
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    File(PathBuf),
    LinkedDir(String),
}

fn no_duplicates<T>(items: &[(PathBuf, T)], key: impl Fn(&T) -> String, errors: &mut Vec<FileError>) {
    let mut seen: BTreeMap<String, &Path> = BTreeMap::new();
    for (file, item) in items {
        let k = key(item);
        if let Some(first) = seen.get(&k) {
            errors.push(FileError {
                file: file.clone(),
                field: Some("ref".into()),
                message: format!("{k:?} is already defined in {}", first.display()),
            });
        } else {
            seen.insert(k, file);
        }
    }
}

/// A python action's `entry_point` of the form `file.py:function` (run by a warm
/// interpreter, docs/runtimes.md): the file and the function, when the part after the last
/// `:` is a python identifier; None for a plain file.
pub fn python_entry_function(entry_point: &str) -> Option<(&str, &str)> {
    let (file, func) = entry_point.rsplit_once(':')?;
    let ident = !func.is_empty()
        && !func.starts_with(|c: char| c.is_ascii_digit())
        && func.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ident && !file.is_empty()).then_some((file, func))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Meta {
        name: String,
        version: Option<String>,
    }

    fn message_of(yaml: &str) -> String {
        yaml_message(&serde_yaml::from_str::<Meta>(yaml).unwrap_err())
    }

    #[test]
    fn yaml_errors_name_the_kind_of_value_not_the_value() {
        let m = message_of("s3cr3t-token-value");
        assert!(!m.contains("s3cr3t"), "{m}");
        assert!(m.contains("invalid type: string, expected"), "{m}");
        let m = message_of("name: [s3cr3t]");
        assert!(!m.contains("s3cr3t"), "{m}");
        let m = message_of("name: x\nsecret_sauce: 1\n");
        assert!(m.contains("unknown field `secret_sauce`"), "{m}");
        let long = "k".repeat(100);
        let m = message_of(&format!("name: x\n{long}: 1\n"));
        assert!(!m.contains(&"k".repeat(QUOTE_CHARS + 1)), "{m}");
        let m = message_of("name: \"unterminated\n");
        assert!(m.contains("line"), "{m}");
    }
}
