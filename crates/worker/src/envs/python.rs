//! Python environments: one virtualenv per (pack, version, `requirements.txt`), made by
//! `python3 -m venv` and `pip install -r requirements.txt` in the pack's directory (so
//! relative paths in the file — `--find-links vendor`, `./wheels/x.whl` — are the pack's).
//! Its `bin/python` runs the pack's python actions. A pack without `requirements.txt`
//! has none: its actions run with the system's `python3`.

use std::path::{Path, PathBuf};

use super::{ensure, kind_dir, pack_of, run_build, EnvError, EnvKey, Kind};
use crate::runners::Job;

/// The file that asks for an environment, in the pack's directory.
pub const REQUIREMENTS: &str = "requirements.txt";

/// The build, in the sandbox: `$1` is the pack's directory, `$2` the (empty) build folder.
const SCRIPT: &str = r#"set -e
exec 2>&1
cd "$1"
python3 -m venv "$2"
"$2/bin/python" -m pip install --no-input --disable-pip-version-check --no-cache-dir --progress-bar off \
    --no-warn-script-location -r requirements.txt
"#;

/// The virtualenv of the job's pack, built on first use; None when the pack has no
/// `requirements.txt` (or no directory).
pub async fn env_for(job: &Job) -> Result<Option<PathBuf>, EnvError> {
    let Some(pack_dir) = job.pack_dir.as_deref() else { return Ok(None) };
    let file = pack_dir.join(REQUIREMENTS);
    if !file.is_file() {
        return Ok(None);
    }
    let (pack_ref, version) = pack_of(job);
    let requirements = std::fs::read(&file)
        .map_err(|e| EnvError::Failed(format!("cannot read {} of pack {pack_ref} {version}: {e}", file.display())))?;
    let key = EnvKey::new(Kind::Python, pack_ref, version, &[(REQUIREMENTS, &requirements)]);
    let dir = kind_dir(job, Kind::Python)?;
    let key = &key;
    ensure(&dir, key, &job.cancel, |build| async move { build_env(job, key, pack_dir, &build).await }).await.map(Some)
}

async fn build_env(job: &Job, key: &EnvKey, pack_dir: &Path, build: &Path) -> Result<(), EnvError> {
    let env = [("PIP_NO_INPUT", "1"), ("PIP_DISABLE_PIP_VERSION_CHECK", "1")];
    run_build(job, key, pack_dir, build, SCRIPT, "python3 -m venv, pip install -r requirements.txt", &env).await
}

/// The python that runs actions in `env`.
pub fn python(env: &Path) -> PathBuf {
    env.join("bin/python")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::envs::MARKER;
    use crate::runners::{process, tests::job};
    use attune_core::domain::RunnerType;

    /// A fixture pack of `tests/fixtures/runtime_packs`.
    pub(crate) fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/runtime_packs")
            .join(name)
            .canonicalize()
            .unwrap()
    }

    #[tokio::test]
    async fn a_pack_with_requirements_runs_in_its_own_virtualenv_built_once() {
        let envs = tempfile::tempdir().unwrap();
        let mut job = job("rt_py_a.which", json!({"name": "ada"}));
        job.runner_type = RunnerType::Python;
        job.entry_point = Some("which.py".into());
        job.pack_dir = Some(fixture("py_a"));
        job.pack_ref = Some("rt_py_a".into());
        job.pack_version = Some("1.0.0".into());
        job.envs_dir = envs.path().to_path_buf();
        job.timeout = std::time::Duration::from_secs(120);
        let out = process::run(&job).await;
        assert!(out.succeeded, "{out:?}");
        let output = out.output.unwrap();
        assert_eq!(output["version"], "1.0.0");
        let env = Path::new(output["prefix"].as_str().unwrap());
        assert_eq!(env.parent().unwrap(), envs.path().canonicalize().unwrap().join("python"));
        assert!(env.file_name().unwrap().to_string_lossy().starts_with("rt_py_a-1.0.0-"), "{}", env.display());
        let marker = std::fs::read(env.join(MARKER)).unwrap();
        // Taken back from the build's user: the worker's, writable by it alone.
        let euid = nix::unistd::geteuid().as_raw();
        super::super::walk(env, &mut |path, meta| {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(meta.uid(), euid, "{}", path.display());
            assert!(meta.file_type().is_symlink() || meta.mode() & 0o022 == 0, "{}", path.display());
            Ok(())
        })
        .unwrap();
        // Cached: the next execution uses the same environment, unbuilt.
        assert!(process::run(&job).await.succeeded);
        assert_eq!(std::fs::read(env.join(MARKER)).unwrap(), marker);
    }
}
