//! Typed settings. Every setting has a default, a YAML key (file from `--config` or
//! `ATTUNE_CONFIG`) and an environment variable; the environment wins.
//!
//! The environment names are the external contract of API.md, so they are mapped to
//! YAML keys by an explicit table rather than by a naming rule.

use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

use crate::keyring::Keyring;

/// Environment variable -> YAML key. `DATABASE_URL` is the lower-priority fallback of
/// `ATTUNE_DATABASE_URL` and is handled separately.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("ATTUNE_DATABASE_URL", "database.url"),
    ("ATTUNE_DATA_DIR", "data_dir"),
    ("ATTUNE_API_HOST", "api.host"),
    ("ATTUNE_API_PORT", "api.port"),
    ("ATTUNE_PUBLIC_URL", "api.public_url"),
    ("ATTUNE_RATE_LIMIT_PER_SECOND", "api.rate_limit_per_second"),
    ("ATTUNE_INGEST_BATCH", "api.ingest_batch"),
    ("ATTUNE_INGEST_QUEUE", "api.ingest_queue"),
    ("ATTUNE_JWT_SECRET", "auth.jwt_secret"),
    ("ATTUNE_ACCESS_TOKEN_TTL_SECONDS", "auth.access_token_ttl_seconds"),
    ("ATTUNE_ADMIN_PASSWORD", "auth.admin_password"),
    ("ATTUNE_ALLOW_REGISTRATION", "auth.allow_registration"),
    ("ATTUNE_ENCRYPTION_KEY", "datastore.encryption_key"),
    ("ATTUNE_ENCRYPTION_PREVIOUS_KEYS", "datastore.previous_keys"),
    ("ATTUNE_WORKER_CONCURRENCY", "worker.concurrency"),
    ("ATTUNE_WORKER_MAX_OUTPUT_BYTES", "worker.max_output_bytes"),
    ("ATTUNE_DEFAULT_TIMEOUT_SECONDS", "worker.default_timeout_seconds"),
    ("ATTUNE_WORKER_WARM_PYTHON_POOL", "worker.warm_python_pool"),
    ("ATTUNE_WORKER_WARM_PYTHON_IDLE_SECONDS", "worker.warm_python_idle_seconds"),
    ("ATTUNE_NOTIFIER_PORT", "notifier.port"),
    ("ATTUNE_NOTIFIER_SOCKET_BUFFER", "notifier.socket_buffer"),
    ("ATTUNE_CHANGE_LOG_RETENTION_HOURS", "notifier.retention_hours"),
    ("ATTUNE_HISTORY_EXECUTIONS_DAYS", "history.executions_days"),
    ("ATTUNE_HISTORY_EVENTS_DAYS", "history.events_days"),
    ("ATTUNE_HISTORY_ENFORCEMENTS_DAYS", "history.enforcements_days"),
    ("ATTUNE_HISTORY_AUDIT_LOG_DAYS", "history.audit_log_days"),
    ("ATTUNE_AMQP_URL", "bridge.amqp_url"),
    ("ATTUNE_AMQP_INBOUND", "bridge.amqp_inbound"),
    ("ATTUNE_PACKS_DIR", "packs.dirs"),
    ("ATTUNE_PACK_PATH_ROOTS", "packs.path_roots"),
    ("ATTUNE_PACK_MAX_UPLOAD_BYTES", "packs.max_upload_bytes"),
    ("ATTUNE_PACK_MAX_UNPACKED_BYTES", "packs.max_unpacked_bytes"),
    ("ATTUNE_PACK_MAX_FILES", "packs.max_files"),
    ("ATTUNE_PACK_ALLOW_LOCAL_GIT", "packs.allow_local_git"),
    ("ATTUNE_SANDBOX", "sandbox.mode"),
    ("ATTUNE_RUN_AS", "sandbox.run_as"),
    ("ATTUNE_SANDBOX_BIND", "sandbox.bind"),
    ("ATTUNE_CONTAINER_ENGINE", "sandbox.container_engine"),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    /// Private cluster, pack environments, generated secrets.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    pub auth: AuthConfig,
    pub datastore: DatastoreConfig,
    pub worker: WorkerConfig,
    pub notifier: NotifierConfig,
    pub history: HistoryConfig,
    pub bridge: BridgeConfig,
    pub packs: PacksConfig,
    pub sandbox: SandboxConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL to use; `None` runs the private local cluster under `data_dir`.
    pub url: Option<String>,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub host: String,
    pub port: u16,
    /// Base of `webhook_url` and `context.api_url`; default `http://{host}:{port}`.
    pub public_url: Option<String>,
    /// Per-user requests per second; 0 = off.
    pub rate_limit_per_second: u32,
    pub max_body_bytes: usize,
    pub request_timeout_seconds: u64,
    /// Most webhook requests written by one commit (the intake's group commit).
    pub ingest_batch: usize,
    /// Most webhook requests waiting to be written; beyond it 503 with `Retry-After`.
    pub ingest_queue: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 signing secret; generated and kept in the data dir when unset.
    pub jwt_secret: Option<String>,
    pub access_token_ttl_seconds: u64,
    pub refresh_token_ttl_seconds: u64,
    pub admin_password: Option<String>,
    pub allow_registration: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatastoreConfig {
    /// The current key: `v<N>:<base64 of 32 bytes>` (bare base64 is version 1); generated
    /// and kept in the data dir when unset.
    pub encryption_key: Option<String>,
    /// Earlier keys, still accepted for reading until `attune keys rotate` has re-sealed
    /// everything under the current one (comma-separated in the environment).
    #[serde(default, deserialize_with = "string_list")]
    pub previous_keys: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Executions one worker runs at once; default CPUs x 4.
    pub concurrency: usize,
    pub max_output_bytes: usize,
    pub default_timeout_seconds: u64,
    /// Warm python interpreters one worker keeps at most (docs/runtimes.md, "Warm
    /// interpreters"); 0: none, every python action runs in a new interpreter.
    pub warm_python_pool: usize,
    /// A warm interpreter idle this long is stopped.
    pub warm_python_idle_seconds: u64,
}

/// The WebSocket stream (docs/streaming.md) and the change log behind it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// Port of `/ws` when the notifier runs without the API (on `api.host`); with the API
    /// in the same process, `/ws` is served on the API's port instead.
    pub port: u16,
    /// Messages one WebSocket may have waiting; a socket further behind is closed (4008)
    /// and reconnects with `since`, so a slow client never slows the others.
    pub socket_buffer: usize,
    /// How long change-log rows are kept: how far back `since` can replay.
    pub retention_hours: u64,
}

/// How long history is kept (docs/operations.md, "History and retention"): whole
/// partitions are dropped once everything in them is older than this, never anything still
/// in flight. 0 keeps a table's history for good. The change log's is
/// `notifier.retention_hours`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Executions, with their output, attempts, workflow state and inquiries.
    pub executions_days: u64,
    pub events_days: u64,
    pub enforcements_days: u64,
    pub audit_log_days: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    pub amqp_url: Option<String>,
    pub amqp_inbound: bool,
    /// The inbound queue; its dead-letter queue is `<inbound_queue>.dlq`.
    pub inbound_queue: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacksConfig {
    /// Directories whose sub-directories are packs, loaded as system packs at start.
    /// The environment form is `:`-separated.
    #[serde(deserialize_with = "path_list")]
    pub dirs: Vec<PathBuf>,
    /// Where the core pack lives; found next to the binary or in the source tree when unset.
    pub core_dir: Option<PathBuf>,
    /// Folders under which `POST /api/v1/packs {"path"}` may load a pack; none (the
    /// default): path loads are refused. The environment form is `:`-separated.
    #[serde(deserialize_with = "path_list")]
    pub path_roots: Vec<PathBuf>,
    /// The largest pack archive `POST /api/v1/packs/upload` (and a reload with an archive)
    /// takes, in bytes as sent (compressed); a larger body is 413.
    pub max_upload_bytes: u64,
    /// The most an uploaded or git-installed pack may unpack to, in bytes of file content
    /// (the guard against archives that expand enormously).
    pub max_unpacked_bytes: u64,
    /// The most entries (files, folders, links) an uploaded or git-installed pack may hold.
    pub max_files: u64,
    /// Whether `POST /api/v1/packs/install` may clone `file://` URLs and local paths (off:
    /// only `https://`). Local repositories are the server's files: an administrator's
    /// choice, like `path_roots`.
    pub allow_local_git: bool,
}

/// How actions and sensors are isolated (docs/security.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Their own user, mount, PID (and IPC/UTS) namespaces where the kernel allows.
    Namespaces,
    /// Unsandboxed: run as the service's user (warned at every start).
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub mode: SandboxMode,
    /// OS user (name or uid) actions and sensors run as; default a dedicated unprivileged
    /// user. Never the service's user, never root.
    pub run_as: Option<String>,
    /// Host folders sandboxed actions see read-write. The environment form is `:`-separated.
    #[serde(deserialize_with = "path_list")]
    pub bind: Vec<PathBuf>,
    /// Default limits of one execution (an action may lower or raise them within these).
    pub limits: LimitsConfig,
    /// The Docker Engine API address `container` actions run through (`unix:///path` or
    /// `tcp://host:port`); unset: `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    pub container_engine: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Address space, in MiB.
    pub memory_mb: u64,
    /// Processes (and threads) one execution may have at once.
    pub processes: u64,
    pub open_files: u64,
    /// CPU seconds (the wall-clock timeout is separate).
    pub cpu_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            database: DatabaseConfig { url: None, max_connections: 20 },
            data_dir: PathBuf::from("./.attune"),
            api: ApiConfig {
                host: "127.0.0.1".into(),
                port: 8080,
                public_url: None,
                rate_limit_per_second: 0,
                max_body_bytes: 1024 * 1024,
                request_timeout_seconds: 30,
                ingest_batch: 256,
                ingest_queue: 4096,
            },
            auth: AuthConfig {
                jwt_secret: None,
                access_token_ttl_seconds: 3600,
                refresh_token_ttl_seconds: 30 * 24 * 3600,
                admin_password: None,
                allow_registration: false,
            },
            datastore: DatastoreConfig { encryption_key: None, previous_keys: Vec::new() },
            worker: WorkerConfig {
                concurrency: cpus * 4,
                max_output_bytes: 1024 * 1024,
                default_timeout_seconds: 600,
                warm_python_pool: 16,
                warm_python_idle_seconds: 300,
            },
            notifier: NotifierConfig { port: 8081, socket_buffer: 1024, retention_hours: 24 },
            history: HistoryConfig { executions_days: 30, events_days: 30, enforcements_days: 30, audit_log_days: 365 },
            bridge: BridgeConfig { amqp_url: None, amqp_inbound: true, inbound_queue: "attune.inbound".into() },
            packs: PacksConfig {
                dirs: Vec::new(),
                core_dir: None,
                path_roots: Vec::new(),
                max_upload_bytes: 50 * 1024 * 1024,
                max_unpacked_bytes: 256 * 1024 * 1024,
                max_files: 10_000,
                allow_local_git: false,
            },
            sandbox: SandboxConfig {
                mode: SandboxMode::Namespaces,
                run_as: None,
                bind: Vec::new(),
                limits: LimitsConfig { memory_mb: 1024, processes: 256, open_files: 1024, cpu_seconds: 3600 },
                container_engine: None,
            },
        }
    }
}

/// A configuration that cannot be used. The message names the key, the value and what
/// was expected, so start-up can stop with it as it is.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Defaults < YAML file (`file`, else `ATTUNE_CONFIG`) < process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &vars)
    }

    /// As [`Config::load`], with the environment given explicitly (tests).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let file = file.map(Path::to_path_buf).or_else(|| lookup("ATTUNE_CONFIG").map(PathBuf::from));

        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = &file {
            if !file.is_file() {
                return Err(ConfigError(format!("config file {} does not exist", file.display())));
            }
            figment = figment.merge(Yaml::file(file));
        }
        // The variables are layered as one provider built from the explicit table (not
        // figment's Env provider, which would read the whole process environment).
        let mut overrides = serde_json::Map::new();
        let mut set = |key: &str, value: &str| {
            insert_dotted(&mut overrides, key, parse_env_value(value));
        };
        if let Some(url) = lookup("DATABASE_URL") {
            set("database.url", &url);
        }
        for (name, key) in ENV_KEYS {
            if let Some(value) = lookup(name) {
                set(key, &value);
            }
        }
        figment = figment.merge(Serialized::defaults(serde_json::Value::Object(overrides)));

        let config: Config = figment.extract().map_err(|e| describe(&e, file.as_deref(), &lookup))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, value: &dyn std::fmt::Display, expected: &str| {
            Err(ConfigError(format!("{key} ({}) = \"{value}\": expected {expected}", env_name(key))))
        };
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency", &0, "a whole number of at least 1");
        }
        if self.worker.default_timeout_seconds == 0 {
            return bad("worker.default_timeout_seconds", &0, "a number of seconds of at least 1");
        }
        if self.auth.access_token_ttl_seconds == 0 {
            return bad("auth.access_token_ttl_seconds", &0, "a number of seconds of at least 1");
        }
        if self.notifier.socket_buffer == 0 {
            return bad("notifier.socket_buffer", &0, "a number of messages of at least 1");
        }
        if self.history.audit_log_days != 0 && self.history.audit_log_days < 30 {
            return bad(
                "history.audit_log_days",
                &self.history.audit_log_days,
                "0 (kept for good) or a number of days of at least 30",
            );
        }
        if self.notifier.retention_hours == 0 {
            return bad("notifier.retention_hours", &0, "a number of hours of at least 1");
        }
        if self.packs.max_upload_bytes == 0 {
            return bad("packs.max_upload_bytes", &0, "a number of bytes of at least 1");
        }
        if self.packs.max_unpacked_bytes == 0 {
            return bad("packs.max_unpacked_bytes", &0, "a number of bytes of at least 1");
        }
        if self.packs.max_files == 0 {
            return bad("packs.max_files", &0, "a number of entries of at least 1");
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", &0, "a whole number of at least 1");
        }
        if let Some(key) = &self.datastore.encryption_key {
            Keyring::parse_key(key)
                .map_err(|e| ConfigError(format!("datastore.encryption_key (ATTUNE_ENCRYPTION_KEY): {e}")))?;
        }
        for key in &self.datastore.previous_keys {
            Keyring::parse_key(key)
                .map_err(|e| ConfigError(format!("datastore.previous_keys (ATTUNE_ENCRYPTION_PREVIOUS_KEYS): {e}")))?;
        }
        if let Some(url) = &self.database.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return bad("database.url", url, "a postgres:// or postgresql:// URL");
            }
        }
        if let Some(url) = &self.bridge.amqp_url {
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return bad("bridge.amqp_url", url, "an amqp:// or amqps:// URL");
            }
        }
        if self.bridge.inbound_queue.trim().is_empty() {
            return bad("bridge.inbound_queue", &"", "a queue name");
        }
        if let Some(user) = &self.sandbox.run_as {
            if user == "root" || user == "0" {
                return bad("sandbox.run_as", user, "an unprivileged user (never root)");
            }
        }
        if self.api.ingest_batch == 0 {
            return bad("api.ingest_batch", &0, "at least 1");
        }
        if self.api.ingest_queue == 0 {
            return bad("api.ingest_queue", &0, "at least 1");
        }
        if let Some(url) = &self.api.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return bad("api.public_url", url, "an http:// or https:// URL");
            }
        }
        Ok(())
    }

    /// Base URL clients reach the API at (`webhook_url`, `context.api_url`).
    pub fn public_url(&self) -> String {
        match &self.api.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{}:{}", self.api.host, self.api.port),
        }
    }
}

/// The environment variable that sets a YAML key, for error messages.
fn env_name(key: &str) -> String {
    ENV_KEYS
        .iter()
        .find(|(_, k)| *k == key)
        .map_or_else(|| "no environment variable".to_string(), |(name, _)| (*name).to_string())
}

/// Environment values are typed like YAML scalars: `8080` is a number, `true` a bool,
/// anything else a string. A value that does not fit its key is reported by `extract`.
fn parse_env_value(raw: &str) -> serde_json::Value {
    match serde_yaml::from_str::<serde_json::Value>(raw) {
        Ok(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v,
        _ => serde_json::Value::String(raw.to_string()),
    }
}

fn insert_dotted(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: serde_json::Value) {
    match key.split_once('.') {
        None => {
            map.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = map.entry(head.to_string()).or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let serde_json::Value::Object(inner) = entry {
                insert_dotted(inner, rest, value);
            }
        }
    }
}

fn describe(error: &figment::Error, file: Option<&Path>, lookup: &dyn Fn(&str) -> Option<String>) -> ConfigError {
    let key = error.path.join(".");
    let source = if key.is_empty() {
        String::new()
    } else {
        match ENV_KEYS.iter().find(|(_, k)| *k == key) {
            Some((name, _)) if lookup(name).is_some() => {
                format!(" (from environment variable {name})")
            }
            _ => match file {
                Some(f) => format!(" (from {} or the environment)", f.display()),
                None => format!(" ({})", env_name(&key)),
            },
        }
    };
    let what = error.kind.to_string();
    if key.is_empty() {
        ConfigError(format!("{what}{}", file.map(|f| format!(" in {}", f.display())).unwrap_or_default()))
    } else {
        ConfigError(format!("{key}{source}: {what}"))
    }
}

fn string_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Joined(String),
        List(Vec<String>),
    }
    Ok(match Form::deserialize(deserializer)? {
        Form::Joined(s) => s.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from).collect(),
        Form::List(list) => list,
    })
}

fn path_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Joined(String),
        List(Vec<PathBuf>),
    }
    Ok(match Form::deserialize(deserializer)? {
        Form::Joined(s) => s.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect(),
        Form::List(list) => list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::load_from(None, &[]).unwrap();
        assert_eq!(c.api.port, 8080);
        assert_eq!(c.api.host, "127.0.0.1");
        assert_eq!(c.auth.access_token_ttl_seconds, 3600);
        assert_eq!(c.worker.max_output_bytes, 1_048_576);
        assert_eq!(c.worker.default_timeout_seconds, 600);
        assert!(!c.auth.allow_registration, "registration is closed unless turned on");
        assert_eq!(c.sandbox.mode, SandboxMode::Namespaces);
        assert!(c.packs.path_roots.is_empty(), "path loads are refused unless roots are given");
        assert_eq!(c.packs.max_upload_bytes, 50 * 1024 * 1024);
        assert!(!c.packs.allow_local_git, "git installs from the server's own files are off unless turned on");
        assert!(c.bridge.amqp_inbound);
        assert_eq!(c.notifier.port, 8081);
        assert_eq!(c.notifier.retention_hours, 24);
        assert_eq!(c.notifier.socket_buffer, 1024);
        assert_eq!(c.data_dir, PathBuf::from("./.attune"));
        assert!(c.database.url.is_none());
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("attune.yaml");
        std::fs::write(&file, "api:\n  port: 9000\n  host: 0.0.0.0\nworker:\n  concurrency: 3\n").unwrap();
        let c = Config::load_from(Some(&file), &env(&[("ATTUNE_API_PORT", "9100")])).unwrap();
        assert_eq!(c.api.port, 9100, "environment wins over the file");
        assert_eq!(c.api.host, "0.0.0.0", "file wins over the default");
        assert_eq!(c.worker.concurrency, 3);

        let via_env = Config::load_from(None, &env(&[("ATTUNE_CONFIG", file.to_str().unwrap())])).unwrap();
        assert_eq!(via_env.api.port, 9000, "ATTUNE_CONFIG names the file");
    }

    #[test]
    fn every_contract_variable_is_read() {
        let c = Config::load_from(
            None,
            &env(&[
                ("DATABASE_URL", "postgres://low/x"),
                ("ATTUNE_DATABASE_URL", "postgres://high/y"),
                ("ATTUNE_DATA_DIR", "/tmp/d"),
                ("ATTUNE_JWT_SECRET", "s3cret"),
                ("ATTUNE_ACCESS_TOKEN_TTL_SECONDS", "60"),
                ("ATTUNE_ENCRYPTION_KEY", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
                ("ATTUNE_ADMIN_PASSWORD", "pw"),
                ("ATTUNE_ALLOW_REGISTRATION", "false"),
                ("ATTUNE_RATE_LIMIT_PER_SECOND", "10"),
                ("ATTUNE_WORKER_CONCURRENCY", "7"),
                ("ATTUNE_WORKER_MAX_OUTPUT_BYTES", "100"),
                ("ATTUNE_DEFAULT_TIMEOUT_SECONDS", "5"),
                ("ATTUNE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672"),
                ("ATTUNE_AMQP_INBOUND", "false"),
                ("ATTUNE_PACKS_DIR", "/a:/b"),
                ("ATTUNE_PUBLIC_URL", "https://attune.example/"),
                ("ATTUNE_NOTIFIER_PORT", "9081"),
                ("ATTUNE_NOTIFIER_SOCKET_BUFFER", "64"),
                ("ATTUNE_CHANGE_LOG_RETENTION_HOURS", "48"),
                ("ATTUNE_HISTORY_EXECUTIONS_DAYS", "7"),
                ("ATTUNE_HISTORY_EVENTS_DAYS", "3"),
                ("ATTUNE_HISTORY_ENFORCEMENTS_DAYS", "0"),
                ("ATTUNE_HISTORY_AUDIT_LOG_DAYS", "400"),
                ("ATTUNE_PACK_MAX_UPLOAD_BYTES", "1000"),
                ("ATTUNE_PACK_MAX_UNPACKED_BYTES", "2000"),
                ("ATTUNE_PACK_MAX_FILES", "30"),
                ("ATTUNE_PACK_ALLOW_LOCAL_GIT", "true"),
                ("ATTUNE_CONTAINER_ENGINE", "tcp://10.0.0.5:2375"),
            ]),
        )
        .unwrap();
        assert_eq!(c.database.url.as_deref(), Some("postgres://high/y"));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(c.auth.jwt_secret.as_deref(), Some("s3cret"));
        assert_eq!(c.auth.access_token_ttl_seconds, 60);
        assert_eq!(c.auth.admin_password.as_deref(), Some("pw"));
        assert!(!c.auth.allow_registration);
        assert_eq!(c.api.rate_limit_per_second, 10);
        assert_eq!(c.worker.concurrency, 7);
        assert_eq!(c.worker.max_output_bytes, 100);
        assert_eq!(c.worker.default_timeout_seconds, 5);
        assert!(c.bridge.amqp_url.is_some());
        assert!(!c.bridge.amqp_inbound);
        assert_eq!(c.packs.dirs, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.public_url(), "https://attune.example");
        assert_eq!(c.notifier.port, 9081);
        assert_eq!(c.notifier.socket_buffer, 64);
        assert_eq!(c.notifier.retention_hours, 48);
        let h = &c.history;
        assert_eq!((h.executions_days, h.events_days, h.enforcements_days, h.audit_log_days), (7, 3, 0, 400));
        assert_eq!((c.packs.max_upload_bytes, c.packs.max_unpacked_bytes, c.packs.max_files), (1000, 2000, 30));
        assert_eq!(c.sandbox.container_engine.as_deref(), Some("tcp://10.0.0.5:2375"));
        assert!(c.packs.allow_local_git);

        let fallback = Config::load_from(None, &env(&[("DATABASE_URL", "postgres://low/x")])).unwrap();
        assert_eq!(fallback.database.url.as_deref(), Some("postgres://low/x"));
    }

    #[test]
    fn bad_values_name_key_value_and_expectation() {
        let err = Config::load_from(None, &env(&[("ATTUNE_API_PORT", "eighty")])).unwrap_err().to_string();
        assert!(err.contains("api.port"), "{err}");
        assert!(err.contains("eighty"), "{err}");
        assert!(err.contains("u16"), "{err}");

        let err = Config::load_from(None, &env(&[("ATTUNE_API_PORT", "70000")])).unwrap_err().to_string();
        assert!(err.contains("api.port") && err.contains("70000"), "{err}");

        let err = Config::load_from(None, &env(&[("ATTUNE_WORKER_CONCURRENCY", "0")])).unwrap_err().to_string();
        assert!(err.contains("worker.concurrency") && err.contains("ATTUNE_WORKER_CONCURRENCY"), "{err}");

        let err = Config::load_from(None, &env(&[("ATTUNE_ENCRYPTION_KEY", "short")])).unwrap_err().to_string();
        assert!(err.contains("ATTUNE_ENCRYPTION_KEY") && err.contains("32 bytes"), "{err}");

        let err = Config::load_from(None, &env(&[("ATTUNE_DATABASE_URL", "mysql://x")])).unwrap_err().to_string();
        assert!(err.contains("database.url") && err.contains("mysql://x"), "{err}");

        let err = Config::load_from(None, &env(&[("ATTUNE_HISTORY_AUDIT_LOG_DAYS", "7")])).unwrap_err().to_string();
        assert!(err.contains("ATTUNE_HISTORY_AUDIT_LOG_DAYS") && err.contains("at least 30"), "{err}");

        let err = Config::load_from(None, &env(&[("ATTUNE_ALLOW_REGISTRATION", "maybe")])).unwrap_err().to_string();
        assert!(err.contains("auth.allow_registration") && err.contains("maybe"), "{err}");
    }

    #[test]
    fn bad_file_is_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("attune.yaml");
        std::fs::write(&file, "api:\n  prot: 9000\n").unwrap();
        let err = Config::load_from(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("prot"), "{err}");

        let missing = dir.path().join("nope.yaml");
        let err = Config::load_from(Some(&missing), &[]).unwrap_err().to_string();
        assert!(err.contains("nope.yaml") && err.contains("does not exist"), "{err}");
    }
}
