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

use std::collections::{BTreeMap, HashSet};
use std::fs;
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

/// Reads and checks the pack in `dir`.
pub fn load(dir: &Path) -> Result<PackDefinition, PackError> {
    let mut errors = Vec::new();
    let pack_file = dir.join("pack.yaml");
    if !dir.is_dir() {
        return Err(PackError::invalid(dir, None, "not a directory"));
    }
    if !pack_file.is_file() {
        return Err(PackError::invalid(
            &pack_file,
            None,
            "missing pack.yaml: every pack directory needs one (ref, version, description)",
        ));
    }
    let meta = match read_yaml::<PackSpec>(&pack_file).and_then(|spec| spec.check().map_err(|e| at(&pack_file, e))) {
        Ok(meta) => meta,
        Err(e) => return Err(PackError::Invalid(vec![e])),
    };
    let pack = meta.pack_ref.clone();

    let mut actions = Vec::new();
    for file in yaml_files(&dir.join("actions"), &mut errors) {
        let result = read_yaml::<ActionSpec>(&file).and_then(|mut spec| {
            resolve_workflow_file(dir, &file, &mut spec)?;
            let def = spec.check(&pack, stem(&file).as_deref()).map_err(|e| at(&file, e))?;
            check_entry_point(&dir.join("actions"), &file, def.entry_point.as_deref(), def.runner_type)?;
            Ok(def)
        });
        match result {
            Ok(def) => actions.push((file, def)),
            Err(e) => errors.push(e),
        }
    }
    let mut triggers = Vec::new();
    for file in yaml_files(&dir.join("triggers"), &mut errors) {
        match read_yaml::<TriggerSpec>(&file)
            .and_then(|spec| spec.check(&pack, stem(&file).as_deref()).map_err(|e| at(&file, e)))
        {
            Ok(def) => triggers.push((file, def)),
            Err(e) => errors.push(e),
        }
    }
    let mut sensors = Vec::new();
    for file in yaml_files(&dir.join("sensors"), &mut errors) {
        let result = read_yaml::<SensorSpec>(&file).and_then(|spec| {
            let def = spec.check(&pack, stem(&file).as_deref()).map_err(|e| at(&file, e))?;
            check_entry_point(&dir.join("sensors"), &file, Some(&def.entry_point), def.runner_type)?;
            Ok(def)
        });
        match result {
            Ok(def) => sensors.push((file, def)),
            Err(e) => errors.push(e),
        }
    }
    let mut rules = Vec::new();
    for file in yaml_files(&dir.join("rules"), &mut errors) {
        match read_yaml::<RuleSpec>(&file)
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
    let content_hash =
        hash_dir(dir).map_err(|e| PackError::invalid(dir, None, format!("cannot read the pack: {e}")))?;
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
    FileError { file: file.to_path_buf(), field: Some(e.field), message: e.message }
}

fn stem(file: &Path) -> Option<String> {
    file.file_stem().and_then(|s| s.to_str()).map(str::to_string)
}

/// `*.yaml` / `*.yml` files of a sub-directory, sorted; a missing directory is empty.
fn yaml_files(dir: &Path, errors: &mut Vec<FileError>) -> Vec<PathBuf> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(FileError {
                file: dir.to_path_buf(),
                field: None,
                message: format!("cannot read directory: {e}"),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

/// Parses one YAML file. Syntax errors carry serde_yaml's "at line L column C".
fn read_yaml<T: DeserializeOwned>(file: &Path) -> Result<T, FileError> {
    let text = fs::read_to_string(file).map_err(|e| FileError {
        file: file.to_path_buf(),
        field: None,
        message: format!("cannot read: {e}"),
    })?;
    serde_yaml::from_str(&text).map_err(|e| {
        let message = match e.location() {
            Some(loc) if !e.to_string().contains("line") => {
                format!("{e} (line {}, column {})", loc.line(), loc.column())
            }
            _ => e.to_string(),
        };
        FileError { file: file.to_path_buf(), field: None, message: format!("invalid YAML: {message}") }
    })
}

/// `workflow: NAME` in a pack file names `workflows/NAME.yaml`; it is read into the
/// action as an inline definition so the database holds what runs.
fn resolve_workflow_file(dir: &Path, action_file: &Path, spec: &mut ActionSpec) -> Result<(), FileError> {
    let Some(Value::String(name)) = &spec.workflow else {
        return Ok(());
    };
    let name = name.trim_end_matches(".yaml").trim_end_matches(".yml");
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return Err(FileError {
            file: action_file.to_path_buf(),
            field: Some("workflow".into()),
            message: format!("{name:?} must name a file in workflows/ (without directories)"),
        });
    }
    let candidates =
        [dir.join("workflows").join(format!("{name}.yaml")), dir.join("workflows").join(format!("{name}.yml"))];
    let Some(file) = candidates.iter().find(|p| p.is_file()) else {
        return Err(FileError {
            file: action_file.to_path_buf(),
            field: Some("workflow".into()),
            message: format!("workflows/{name}.yaml does not exist"),
        });
    };
    let definition: Value = read_yaml(file)?;
    super::spec::check_workflow(&definition).map_err(|e| at(file, e))?;
    spec.workflow = Some(definition);
    Ok(())
}

fn check_entry_point(base: &Path, file: &Path, entry_point: Option<&str>, runner: RunnerType) -> Result<(), FileError> {
    let Some(ep) = entry_point else { return Ok(()) };
    // Builtin entry points name an in-process function, not a file.
    if runner == RunnerType::Builtin {
        return Ok(());
    }
    if !base.join(ep).is_file() {
        return Err(FileError {
            file: file.to_path_buf(),
            field: Some("entry_point".into()),
            message: format!("{ep:?} does not exist in {}", base.display()),
        });
    }
    Ok(())
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

fn hash_dir(dir: &Path) -> std::io::Result<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Environments built for the pack are not part of its content.
            if name.starts_with('.') || name == "node_modules" || name == "__pycache__" {
                continue;
            }
            if path.is_dir() {
                walk(base, &path, out)?;
            } else if path.is_file() {
                let rel = path.strip_prefix(base).unwrap_or(&path).to_string_lossy().to_string();
                out.push((rel, path));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    for (rel, path) in files {
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update(fs::read(&path)?);
        hasher.update([0]);
    }
    Ok(hex::encode(hasher.finalize()))
}
