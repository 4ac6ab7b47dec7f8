//! Node environments: one `node_modules` per (pack, version, `package.json` and
//! `package-lock.json`), installed by `npm ci` when the pack has a `package-lock.json`,
//! else by `npm install`, production dependencies only. It becomes the `NODE_PATH` of the
//! pack's node actions. A pack without `package.json` has none.
//!
//! npm installs next to the `package.json` it reads, and the pack's directory is
//! read-only: the build copies the pack (without any `node_modules` of its own) into the
//! build folder, installs there — so relative `file:` dependencies (`file:vendor/x`,
//! `file:vendor/x.tgz`) resolve as in the pack, copied in (`--install-links`) rather than
//! linked — then keeps `node_modules`, `package.json` and the lock file, nothing else.

use std::path::{Path, PathBuf};

use super::{ensure, kind_dir, pack_of, run_build, EnvError, EnvKey, Kind};
use crate::runners::Job;

/// The file that asks for an environment, in the pack's directory.
pub const PACKAGE_JSON: &str = "package.json";
/// With it, `npm ci` installs exactly what it lists.
pub const PACKAGE_LOCK: &str = "package-lock.json";

/// The build, in the sandbox: `$1` is the pack's directory, `$2` the (empty) build folder.
const SCRIPT: &str = r#"set -e
exec 2>&1
mkdir "$2/.pack"
tar -C "$1" --exclude=./node_modules -cf - . | tar -C "$2/.pack" -xf -
cd "$2/.pack"
if [ -f package-lock.json ]; then
    npm ci --omit=dev --install-links --no-audit --no-fund
else
    npm install --omit=dev --install-links --no-audit --no-fund
fi
mkdir -p node_modules
mv node_modules "$2/node_modules"
cp package.json "$2/"
if [ -f package-lock.json ]; then cp package-lock.json "$2/"; fi
cd "$2"
rm -rf .pack
"#;

/// The `node_modules` environment of the job's pack, built on first use; None when the
/// pack has no `package.json` (or no directory).
pub async fn env_for(job: &Job) -> Result<Option<PathBuf>, EnvError> {
    let Some(pack_dir) = job.pack_dir.as_deref() else { return Ok(None) };
    let manifest = pack_dir.join(PACKAGE_JSON);
    if !manifest.is_file() {
        return Ok(None);
    }
    let (pack_ref, version) = pack_of(job);
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| EnvError::Failed(format!("cannot read {} of pack {pack_ref} {version}: {e}", path.display())))
    };
    let package = read(&manifest)?;
    let lock_file = pack_dir.join(PACKAGE_LOCK);
    let lock = if lock_file.is_file() { Some(read(&lock_file)?) } else { None };
    let mut files: Vec<(&str, &[u8])> = vec![(PACKAGE_JSON, &package)];
    if let Some(lock) = &lock {
        files.push((PACKAGE_LOCK, lock));
    }
    let key = EnvKey::new(Kind::Node, pack_ref, version, &files);
    let dir = kind_dir(job, Kind::Node)?;
    let key = &key;
    ensure(&dir, key, &job.cancel, |build| async move { build_env(job, key, pack_dir, &build).await }).await.map(Some)
}

async fn build_env(job: &Job, key: &EnvKey, pack_dir: &Path, build: &Path) -> Result<(), EnvError> {
    let env = [
        ("MALLOC_ARENA_MAX", "2"),
        ("NPM_CONFIG_UPDATE_NOTIFIER", "false"),
        ("NPM_CONFIG_FUND", "false"),
        ("NPM_CONFIG_AUDIT", "false"),
        ("NPM_CONFIG_LOGLEVEL", "warn"),
    ];
    let what = if pack_dir.join(PACKAGE_LOCK).is_file() { "npm ci" } else { "npm install" };
    run_build(job, key, pack_dir, build, SCRIPT, what, &env).await
}

/// The `NODE_PATH` of actions in `env`.
pub fn node_path(env: &Path) -> PathBuf {
    env.join("node_modules")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runners::{process, tests::job};
    use attune_core::domain::RunnerType;

    /// Copies `from` into `to` (files and folders).
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy_dir(&path, &target);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }

    #[tokio::test]
    async fn without_a_lock_file_npm_install_builds_the_node_path_of_inline_code() {
        without_a_lock_file(attune_core::child::SandboxMode::Namespaces).await;
    }

    #[tokio::test]
    async fn unsandboxed_workers_build_environments_too() {
        without_a_lock_file(attune_core::child::SandboxMode::None).await;
    }

    #[tokio::test]
    async fn npm_gets_the_address_space_it_needs_whatever_the_actions_limit() {
        let envs = tempfile::tempdir().unwrap();
        let mut job = job("rt_node.pad", json!({}));
        job.runner_type = RunnerType::Node;
        job.pack_dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/runtime_packs/node_pad"));
        job.pack_ref = Some("rt_node".into());
        job.envs_dir = envs.path().to_path_buf();
        // Far below what node reserves at start (~730 MiB): npm could not even start.
        job.sandbox.limits.memory_mb = 256;
        let env = env_for(&job).await.unwrap().unwrap();
        assert!(node_path(&env).join("attune-demo-pad").is_dir());
    }

    async fn without_a_lock_file(mode: attune_core::child::SandboxMode) {
        let dir = tempfile::tempdir().unwrap();
        let pack = dir.path().join("pack");
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/runtime_packs/node_pad");
        copy_dir(&fixture, &pack);
        std::fs::remove_file(pack.join(PACKAGE_LOCK)).unwrap();
        let mut job = job("rt_node.inline", json!({"text": "7"}));
        job.runner_type = RunnerType::Node;
        job.code = Some(
            "const pad = require('attune-demo-pad');\nexports.run = (p) => ({padded: pad(p.text, 3, '0')});\n".into(),
        );
        job.pack_dir = Some(pack.clone());
        job.pack_ref = Some("rt_node".into());
        job.pack_version = Some("1.0.0".into());
        job.envs_dir = dir.path().join("envs");
        job.timeout = std::time::Duration::from_secs(120);
        job.sandbox.mode = mode;
        let out = process::run(&job).await;
        assert!(out.succeeded, "{out:?}");
        assert_eq!(out.output, Some(json!({"padded": "007"})));
        let envs: Vec<PathBuf> =
            std::fs::read_dir(dir.path().join("envs/node")).unwrap().map(|e| e.unwrap().path()).collect();
        let env = envs.iter().find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).unwrap();
        assert!(env.join("node_modules/attune-demo-pad/index.js").is_file());
        assert!(!env.join(".pack").exists(), "the pack's copy is gone");
        assert!(!pack.join("node_modules").exists(), "the pack's directory is untouched");
    }
}
