//! First-start work shared by every entry point: the process's keys, the system packs,
//! and the first tenant and admin.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use sqlx::PgPool;

use crate::keyring::Keyring;
use crate::pack::{install, loader, PackError};
use crate::Config;

/// Secrets the process signs and encrypts with. Never stored in the database.
#[derive(Clone)]
pub struct Keys {
    pub jwt_secret: Vec<u8>,
    /// The encryption keys: the current one and those accepted for reading.
    pub encryption: Keyring,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys { .. }")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error("system pack {dir}: {source}")]
    SystemPack { dir: PathBuf, source: PackError },
    #[error(
        "the core pack was not found (looked in {0}); set packs.core_dir in the config file to the packs/core directory"
    )]
    NoCorePack(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BootstrapError + '_ {
    move |source| BootstrapError::Io { path: path.to_path_buf(), source }
}

impl Keys {
    /// The configured keys, or ones generated once and kept in `<data_dir>/secrets/` (files
    /// 0600, the folder 0700). The encryption keys: `datastore.encryption_key` (else the
    /// file `encryption_key`) is current; `datastore.previous_keys` and, with the file, the
    /// lines of `encryption_key.previous` are accepted for reading.
    pub fn load_or_generate(config: &Config) -> Result<Keys, BootstrapError> {
        let dir = config.data_dir.join("secrets");
        let jwt_secret = match &config.auth.jwt_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => read_or_create(&dir.join("jwt_secret"), || random_b64(48))?.into_bytes(),
        };
        let invalid = |path: &Path, e: String| BootstrapError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        };
        let mut previous_texts = config.datastore.previous_keys.clone();
        let (current_text, source) = match &config.datastore.encryption_key {
            Some(k) => (k.clone(), PathBuf::from("ATTUNE_ENCRYPTION_KEY")),
            None => {
                let path = dir.join(KEY_FILE);
                let previous = dir.join(PREVIOUS_KEYS_FILE);
                if previous.is_file() {
                    let text = fs::read_to_string(&previous).map_err(io_err(&previous))?;
                    previous_texts.extend(text.lines().filter(|l| !l.trim().is_empty()).map(String::from));
                }
                (read_or_create(&path, || random_b64(32))?, path)
            }
        };
        let current = Keyring::parse_key(&current_text).map_err(|e| invalid(&source, e))?;
        let previous = previous_texts
            .iter()
            .map(|k| Keyring::parse_key(k))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(Path::new("ATTUNE_ENCRYPTION_PREVIOUS_KEYS"), e))?;
        let encryption = Keyring::new(current, previous).map_err(|e| invalid(&source, e))?;
        Ok(Keys { jwt_secret, encryption })
    }

    /// `attune keys new` where the key is kept in the data dir: a new key, one version
    /// above every known one, becomes current; the old current key is appended to
    /// `encryption_key.previous` first (so a crash between the two writes loses no key).
    /// Returns the new version. Processes pick it up when they restart.
    pub fn add_generated_key(config: &Config) -> Result<i32, BootstrapError> {
        let keys = Keys::load_or_generate(config)?;
        let dir = config.data_dir.join("secrets");
        let version = keys.encryption.newest_version() + 1;
        let key = Keyring::random_key();
        let current = Keyring::format_key(keys.encryption.current_version(), keys.encryption.current_key());
        let previous = dir.join(PREVIOUS_KEYS_FILE);
        let mut f =
            fs::OpenOptions::new().append(true).create(true).mode(0o600).open(&previous).map_err(io_err(&previous))?;
        f.write_all(format!("{current}\n").as_bytes()).and_then(|()| f.sync_all()).map_err(io_err(&previous))?;
        let path = dir.join(KEY_FILE);
        let staged = dir.join(format!("{KEY_FILE}.new"));
        let _ = fs::remove_file(&staged);
        let mut f =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&staged).map_err(io_err(&staged))?;
        f.write_all(Keyring::format_key(version, &key).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err(&staged))?;
        fs::rename(&staged, &path).map_err(io_err(&path))?;
        Ok(version)
    }
}

/// The data dir's current encryption key, and the earlier ones (one per line).
const KEY_FILE: &str = "encryption_key";
const PREVIOUS_KEYS_FILE: &str = "encryption_key.previous";

fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `n` random bytes as hex: a password that needs no quoting in SQL or URLs.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, BootstrapError> {
    read_or_create_secret(path, make).map(|(value, _)| value).map_err(io_err(path))
}

/// Reads a secret file, or writes `make()` to it (mode 0600) if it does not exist yet;
/// the value, and whether it was created now. Its directory is kept at mode 0700 and the
/// file at 0600 (a looser mode left by hand is tightened, with a warning).
pub(crate) fn read_or_create_secret(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<(String, bool)> {
    let dir = path.parent().expect("secret files live in a directory");
    fs::create_dir_all(dir)?;
    tighten(dir, 0o700)?;
    if fs::symlink_metadata(path).is_ok() {
        tighten(path, 0o600)?;
        return Ok((fs::read_to_string(path)?.trim().to_string(), false));
    }
    let value = make();
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(mut f) => {
            f.write_all(value.as_bytes())?;
            f.sync_all()?;
            Ok((value, true))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((fs::read_to_string(path)?.trim().to_string(), false))
        }
        Err(e) => Err(e),
    }
}

/// Sets `path`'s mode to `mode` when it grants more (never follows a link: a secret must
/// be a real file or folder of this user's).
fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other("a symbolic link where a secret is kept: refusing to follow it"));
    }
    let current = meta.permissions().mode() & 0o777;
    if current & !mode != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{current:o}"), "secret readable by others: setting mode {mode:o}");
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// The core pack's directory: `packs.core_dir`, else beside the binary
/// (`<exe>/../share/attune/packs/core`), else the source tree it was built from.
pub fn core_pack_dir(config: &Config) -> Result<PathBuf, BootstrapError> {
    let mut candidates = Vec::new();
    if let Some(dir) = &config.packs.core_dir {
        candidates.push(dir.clone());
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(bin) = exe.parent() {
            candidates.push(bin.join("../share/attune/packs/core"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packs/core"));
    candidates.iter().find(|d| d.join("pack.yaml").is_file()).cloned().ok_or_else(|| {
        BootstrapError::NoCorePack(candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", "))
    })
}

/// Loads the core pack and every pack under `packs.dirs` as system packs (tenant NULL).
/// Unchanged packs are skipped; several processes starting at once take turns.
pub async fn load_system_packs(pool: &PgPool, config: &Config) -> Result<Vec<String>, BootstrapError> {
    let mut dirs = vec![core_pack_dir(config)?];
    for parent in &config.packs.dirs {
        let entries = fs::read_dir(parent).map_err(io_err(parent))?;
        let mut packs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
        packs.sort();
        dirs.extend(packs);
    }
    let mut loaded = Vec::new();
    for dir in dirs {
        let def = loader::load(&dir).map_err(|source| BootstrapError::SystemPack { dir: dir.clone(), source })?;
        let mut tx = pool.begin().await?;
        // Serialise concurrent starts: the second one then sees an unchanged hash.
        sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('attune.system_packs'))").execute(&mut *tx).await?;
        let installed = install::install(&mut tx, None, &def, false)
            .await
            .map_err(|source| BootstrapError::SystemPack { dir: dir.clone(), source })?;
        tx.commit().await?;
        if installed.changed {
            tracing::info!(pack = %def.meta.pack_ref, dir = %dir.display(), "system pack loaded");
        }
        loaded.push(def.meta.pack_ref.to_string());
    }
    Ok(loaded)
}

/// The first admin, made on a first start.
#[derive(Debug)]
pub struct FirstAdmin {
    pub login: String,
    /// Set when the password was generated (to be shown once).
    pub generated_password: Option<String>,
    pub password_file: Option<PathBuf>,
}

/// When no user exists: creates tenant `default` and user `admin` with the configured
/// password, or a generated one saved to `<data_dir>/admin_password` (mode 0600).
pub async fn ensure_first_admin(pool: &PgPool, config: &Config) -> Result<Option<FirstAdmin>, BootstrapError> {
    let mut tx = pool.begin().await?;
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('attune.first_admin'))").execute(&mut *tx).await?;
    let any_user =
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM attune.identity) AS "any!""#).fetch_one(&mut *tx).await?;
    if any_user {
        return Ok(None);
    }
    let (password, generated) = match &config.auth.admin_password {
        Some(p) => (p.clone(), false),
        None => (random_b64(18).replace(['+', '/'], "x"), true),
    };
    let tenant_id = sqlx::query_scalar!(
        "INSERT INTO attune.tenant (name) VALUES ('default') ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO attune.identity (tenant_id, login, display_name, password_hash, role)
         VALUES ($1, 'admin', 'Administrator', $2, 'admin')",
        tenant_id,
        crate::crypto::hash_password(&password),
    )
    .execute(&mut *tx)
    .await?;
    let password_file = if generated {
        let path = config.data_dir.join("admin_password");
        fs::create_dir_all(&config.data_dir).map_err(io_err(&config.data_dir))?;
        let _ = fs::remove_file(&path);
        let mut f =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io_err(&path))?;
        f.write_all(password.as_bytes()).map_err(io_err(&path))?;
        Some(path)
    } else {
        None
    };
    tx.commit().await?;
    Ok(Some(FirstAdmin { login: "admin".into(), generated_password: generated.then_some(password), password_file }))
}
