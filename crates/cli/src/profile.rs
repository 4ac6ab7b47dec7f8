//! Profiles: which server the CLI talks to and the tokens it holds for it.
//!
//! - `$XDG_CONFIG_HOME/attune/config.yaml` (else `~/.config/attune/config.yaml`): the
//!   profiles (`url`, `login`) and which one is current. Written by `attune login`.
//! - `.../attune/credentials/<profile>.json`, mode 0600 in a 0700 folder: the access and
//!   refresh tokens. Refreshing rotates the refresh token (each works once, and a reused
//!   one revokes the user's sessions), so a refresh takes `<profile>.lock` and re-reads
//!   the file first: two `attune` processes never present the same refresh token.
//! - `ATTUNE_URL` and `ATTUNE_TOKEN` override the profile (scripts, CI); a token from the
//!   environment is used as it is, never refreshed.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// The server `attune login` uses when neither `--url` nor a profile names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_PROFILE: &str = "default";

/// `config.yaml`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_profile: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
}

/// `credentials/<profile>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Credentials {
    pub access_token: String,
    pub refresh_token: String,
    /// When the access token expires (refreshed a minute before).
    pub expires_at: DateTime<Utc>,
}

/// The CLI's folder under the user's config home.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// `$XDG_CONFIG_HOME/attune`, else `$HOME/.config/attune`.
    pub fn open() -> Result<Store, CliError> {
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                Some(home) => PathBuf::from(home).join(".config"),
                None => {
                    return Err(CliError::config(
                        "neither XDG_CONFIG_HOME nor HOME is set: the CLI keeps its profiles under one of them \
                         (or set ATTUNE_URL and ATTUNE_TOKEN)",
                    ))
                }
            },
        };
        Ok(Store { dir: base.join("attune") })
    }

    pub fn at(dir: PathBuf) -> Store {
        Store { dir }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    fn credentials_dir(&self) -> PathBuf {
        self.dir.join("credentials")
    }

    fn credentials_path(&self, profile: &str) -> PathBuf {
        self.credentials_dir().join(format!("{profile}.json"))
    }

    /// The config file, empty when there is none yet.
    pub fn load(&self) -> Result<ConfigFile, CliError> {
        let path = self.config_path();
        match fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => Ok(ConfigFile::default()),
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| {
                CliError::config(format!(
                    "{} is not a valid CLI config: {e} (fix it, or delete it and log in again)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
            Err(e) => Err(CliError::config(format!("cannot read {}: {e}", path.display()))),
        }
    }

    pub fn save(&self, config: &ConfigFile) -> Result<(), CliError> {
        let text =
            serde_yaml::to_string(config).map_err(|e| CliError::config(format!("cannot write the config: {e}")))?;
        self.make_dirs()?;
        write_private(&self.config_path(), text.as_bytes())
    }

    /// The stored tokens of `profile`, if any.
    pub fn credentials(&self, profile: &str) -> Result<Option<Credentials>, CliError> {
        let path = self.credentials_path(profile);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                CliError::config(format!("{} is damaged ({e}): run `attune login` to replace it", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CliError::config(format!("cannot read {}: {e}", path.display()))),
        }
    }

    pub fn save_credentials(&self, profile: &str, credentials: &Credentials) -> Result<(), CliError> {
        self.make_dirs()?;
        let bytes = serde_json::to_vec_pretty(credentials).expect("credentials serialise");
        write_private(&self.credentials_path(profile), &bytes)
    }

    /// Removes the tokens of `profile`; false when there were none.
    pub fn forget_credentials(&self, profile: &str) -> Result<bool, CliError> {
        let path = self.credentials_path(profile);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CliError::config(format!("cannot remove {}: {e}", path.display()))),
        }
    }

    /// Takes the refresh lock of `profile` (see the module doc); released when dropped.
    pub fn refresh_lock(&self, profile: &str) -> Result<RefreshLock, CliError> {
        self.make_dirs()?;
        let path = self.credentials_dir().join(format!("{profile}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| CliError::config(format!("cannot open {}: {e}", path.display())))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| CliError::config(format!("cannot lock {}: {e}", path.display())))?;
        Ok(RefreshLock { _lock: lock })
    }

    fn make_dirs(&self) -> Result<(), CliError> {
        for dir in [self.dir.clone(), self.credentials_dir()] {
            fs::create_dir_all(&dir).map_err(|e| CliError::config(format!("cannot create {}: {e}", dir.display())))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| CliError::config(format!("cannot restrict {}: {e}", dir.display())))?;
        }
        Ok(())
    }
}

/// An exclusive lock on a profile's refresh: held while its tokens are re-read and refreshed.
pub struct RefreshLock {
    _lock: Flock<std::fs::File>,
}

/// Writes `bytes` to `path` with mode 0600, through a temporary file renamed over it (a
/// reader never sees half a file, and the mode is right from the first byte).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        CliError::config(format!("cannot write {}: {e}", path.display()))
    })
}

/// Where a command's server and token come from.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub profile: String,
    pub token: TokenSource,
}

#[derive(Debug, Clone)]
pub enum TokenSource {
    /// `ATTUNE_TOKEN`: used as it is.
    Env(String),
    /// The profile's stored tokens, refreshed when they near expiry.
    Stored(Store, Credentials),
}

/// The profile a command uses: `--profile`/`ATTUNE_PROFILE`, else the current one.
pub fn profile_name(config: &ConfigFile, asked: Option<&str>) -> String {
    asked.map(str::to_string).or_else(|| config.current_profile.clone()).unwrap_or_else(|| DEFAULT_PROFILE.into())
}

/// Resolves the server and the token for a command, or says how to log in.
pub fn resolve(asked_profile: Option<&str>) -> Result<Target, CliError> {
    let env_url = non_empty_env("ATTUNE_URL");
    let env_token = non_empty_env("ATTUNE_TOKEN");
    if let (Some(url), Some(token)) = (&env_url, &env_token) {
        return Ok(Target {
            url: normalise_url(url)?,
            profile: "ATTUNE_URL".into(),
            token: TokenSource::Env(token.clone()),
        });
    }
    let store = Store::open()?;
    let config = store.load()?;
    let profile = profile_name(&config, asked_profile);
    let stored = config.profiles.get(&profile);
    let url = match (&env_url, stored) {
        (Some(url), _) => normalise_url(url)?,
        (None, Some(p)) => p.url.clone(),
        (None, None) => {
            let which = if profile == DEFAULT_PROFILE { String::new() } else { format!(" (profile {profile})") };
            return Err(CliError::config(format!(
                "not logged in{which}: run `attune login --url {DEFAULT_URL}` (your server's URL), \
                 or set ATTUNE_URL and ATTUNE_TOKEN"
            )));
        }
    };
    if let Some(token) = env_token {
        return Ok(Target { url, profile, token: TokenSource::Env(token) });
    }
    // Stored tokens belong to the profile's server: with another ATTUNE_URL they would be
    // sent to a server that did not issue them.
    let same_server = stored.is_some_and(|p| p.url == url);
    match store.credentials(&profile)? {
        Some(credentials) if same_server => Ok(Target { url, profile, token: TokenSource::Stored(store, credentials) }),
        _ => Err(CliError::config(format!(
            "not logged in to {url}: run `attune login --url {url}`{}",
            if profile == DEFAULT_PROFILE { String::new() } else { format!(" --profile {profile}") }
        ))),
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `http(s)://host[:port][/prefix]` without a trailing slash; anything else is refused.
pub fn normalise_url(raw: &str) -> Result<String, CliError> {
    let url = raw.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| CliError::usage(format!("{raw:?} is not a server URL ({e}): give one like {DEFAULT_URL}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(CliError::usage(format!("{raw:?} is not a server URL: give one like {DEFAULT_URL}")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(CliError::usage(format!("{raw:?}: a server URL has no query or fragment")));
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_trimmed() {
        assert_eq!(normalise_url("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(normalise_url(" https://attune.example.com/base ").unwrap(), "https://attune.example.com/base");
        assert!(normalise_url("127.0.0.1:8080").is_err());
        assert!(normalise_url("ftp://host").is_err());
        assert!(normalise_url("http://host/?token=x").is_err());
    }

    #[test]
    fn tokens_are_written_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("attune"));
        let credentials = Credentials { access_token: "a".into(), refresh_token: "r".into(), expires_at: Utc::now() };
        store.save_credentials("default", &credentials).unwrap();
        let path = dir.path().join("attune/credentials/default.json");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(dir.path().join("attune")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(store.credentials("default").unwrap(), Some(credentials));
        assert!(store.forget_credentials("default").unwrap());
        assert_eq!(store.credentials("default").unwrap(), None);
    }
}
