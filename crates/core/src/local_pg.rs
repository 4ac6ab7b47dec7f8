//! The private PostgreSQL cluster: what `attune up` and the test suite run on when no
//! database URL is configured.
//!
//! The cluster lives in `<root>/pg` (data in `data/`, Unix socket in `run/`, no TCP port),
//! is created with the system's `initdb` once, reused on the next start, and stopped by
//! [`LocalPostgres::stop`]. PostgreSQL refuses to run as root, so when this process is
//! root the cluster's processes run as `postgres` (else `nobody`), which owns the data.
//!
//! # Authentication
//! Every connection needs a password (SCRAM-SHA-256; `pg_hba.conf` has that one line and
//! no `trust`), whoever can reach the socket. The passwords are generated once and kept in
//! `<root>/secrets/` (folder 0700, files 0600, owned by this process's user):
//! `postgres_password` for the superuser `postgres` (set by `initdb --pwfile`) and
//! `attune_service_password` for the services' login role (set by the caller, see
//! [`crate::db::ensure_roles`]). A cluster created by an earlier version (with `trust`),
//! or whose superuser password file is gone, gets a new superuser password at the next
//! start: the server is stopped if it runs, the password set in single-user mode, and the
//! server started with the new `pg_hba.conf`.
//!
//! Everything here is blocking (it runs `initdb` and `pg_ctl`); call it from
//! `spawn_blocking` in async code.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use nix::unistd::{Gid, Uid, User};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

/// Oldest server major version Attune supports.
const MIN_MAJOR: u32 = 14;
/// Longest Unix socket path the kernel takes (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;
/// The cluster's superuser (made by `initdb -U`).
pub const SUPERUSER: &str = "postgres";
/// The superuser's password file, under `<root>/secrets/`.
const SUPERUSER_PASSWORD_FILE: &str = "postgres_password";
/// The service role's password file, under `<root>/secrets/`.
const SERVICE_PASSWORD_FILE: &str = "attune_service_password";
/// First line of the `pg_hba.conf` Attune writes: a file without it is an earlier
/// version's (`trust`).
const HBA_HEADER: &str = "# Written by attune at every start; edits are overwritten.";

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "no PostgreSQL server binaries found (looked for initdb, pg_ctl and postgres on PATH and in \
         /usr/lib/postgresql/*/bin): install a PostgreSQL {MIN_MAJOR}+ server (e.g. `apt-get install postgresql`) \
         or set ATTUNE_DATABASE_URL to a server you run"
    )]
    NoBinaries,
    #[error("PostgreSQL {found} found in {dir} is too old: Attune needs {MIN_MAJOR} or newer")]
    TooOld { found: String, dir: PathBuf },
    #[error("running as root, but no unprivileged user (postgres or nobody) exists to own the private cluster")]
    NoUnprivilegedUser,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("private cluster at {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: a database password may hold only letters, digits, '-' and '_' (delete the file to have a new one generated)"
    )]
    BadPassword { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalPgError + '_ {
    move |source| LocalPgError::Io { path: path.to_path_buf(), source }
}

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The default for `attune up`: PostgreSQL's normal, crash-safe settings.
    Durable,
    /// For throw-away test clusters: no fsync, no synchronous commit.
    Ephemeral,
}

/// A password; never printed.
#[derive(Clone)]
struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

#[derive(Debug, Clone)]
struct Owner {
    uid: Uid,
    gid: Gid,
    name: String,
}

/// A running private cluster.
#[derive(Debug)]
pub struct LocalPostgres {
    cluster_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    owner: Option<Owner>,
    superuser_password: Password,
    service_password: Password,
}

impl LocalPostgres {
    /// Creates (first time) and starts the cluster under `root`, or joins it if it is
    /// already running. Several processes may call this at once: a lock file serialises them.
    pub fn start(root: &Path, durability: Durability) -> Result<LocalPostgres, LocalPgError> {
        let bin_dir = find_bin_dir()?;
        fs::create_dir_all(root).map_err(io(root))?;
        let root = root.canonicalize().map_err(io(root))?;
        let lock_path = root.join("pg.lock");
        let lock_file =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io(&lock_path))?;
        let mut lock = fd_lock::RwLock::new(lock_file);
        let _guard = lock.write().map_err(io(&lock_path))?;

        let secrets = root.join("secrets");
        let (superuser_password, superuser_password_new) = password(&secrets.join(SUPERUSER_PASSWORD_FILE))?;
        let (service_password, _) = password(&secrets.join(SERVICE_PASSWORD_FILE))?;
        let owner = cluster_owner()?;
        let cluster_dir = choose_cluster_dir(&root, owner.as_ref());
        let pg = LocalPostgres {
            data_dir: cluster_dir.join("data"),
            socket_dir: socket_dir_for(&cluster_dir),
            cluster_dir,
            bin_dir,
            owner,
            superuser_password,
            service_password,
        };
        pg.prepare_dirs()?;
        let created = !pg.data_dir.join("PG_VERSION").exists();
        if created {
            pg.initdb()?;
        }
        pg.write_settings(durability)?;
        let hba_path = pg.data_dir.join("pg_hba.conf");
        let hba = fs::read_to_string(&hba_path).map_err(io(&hba_path))?;
        if !created && (superuser_password_new || !hba.starts_with(HBA_HEADER)) {
            pg.reset_superuser_password(superuser_password_new)?;
        }
        let hba_changed = pg.write_hba(&hba)?;
        if !pg.is_running() {
            pg.clear_stale_pid()?;
            pg.run(
                "pg_ctl start",
                pg.tool("pg_ctl")
                    .args(["-w", "-t", "120", "-s", "-D"])
                    .arg(&pg.data_dir)
                    .arg("-l")
                    .arg(pg.log_file())
                    .arg("start"),
            )?;
        } else if hba_changed {
            tracing::warn!(file = %hba_path.display(), "pg_hba.conf was changed by hand: rewritten, and the server reloaded");
            pg.run("pg_ctl reload", pg.tool("pg_ctl").args(["-s", "-D"]).arg(&pg.data_dir).arg("reload"))?;
        }
        Ok(pg)
    }

    /// Connection options of the superuser `postgres` for database `database`, over the
    /// Unix socket. For creating roles and databases and for migrating (as the owner role);
    /// the services connect with [`LocalPostgres::service_options`].
    pub fn superuser_options(&self, database: &str) -> PgConnectOptions {
        self.options(SUPERUSER, &self.superuser_password, database)
    }

    /// Connection options of the services' login role (`attune_service`: no superuser, owns
    /// nothing; see [`crate::db::ensure_roles`], which sets this password).
    pub fn service_options(&self, database: &str) -> PgConnectOptions {
        self.options(crate::db::SERVICE_ROLE, &self.service_password, database)
    }

    /// The service role's password, for [`crate::db::ensure_roles`].
    pub fn service_password(&self) -> &str {
        &self.service_password.0
    }

    fn options(&self, user: &str, password: &Password, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).username(user).password(&password.0).database(database)
    }

    /// The services' URL, without the password (for logs and messages).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{}@localhost/{database}?host={}", crate::db::SERVICE_ROLE, self.socket_dir.display())
    }

    /// The superuser's URL, password included (for the test suite's child processes; never log it).
    pub fn superuser_url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@localhost/{database}?host={}",
            self.superuser_password.0,
            self.socket_dir.display()
        )
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn is_running(&self) -> bool {
        self.tool("pg_ctl").arg("status").arg("-D").arg(&self.data_dir).output().is_ok_and(|o| o.status.success())
    }

    /// Stops the cluster (fast shutdown: open sessions are ended, committed data is kept).
    pub fn stop(&self) -> Result<(), LocalPgError> {
        if !self.is_running() {
            return Ok(());
        }
        self.run(
            "pg_ctl stop",
            self.tool("pg_ctl").args(["-w", "-t", "60", "-s", "-m", "fast", "-D"]).arg(&self.data_dir).arg("stop"),
        )
    }

    fn log_file(&self) -> PathBuf {
        self.cluster_dir.join("postgres.log")
    }

    fn prepare_dirs(&self) -> Result<(), LocalPgError> {
        for dir in [&self.cluster_dir, &self.socket_dir] {
            fs::create_dir_all(dir).map_err(io(dir))?;
            // The fallback folders live in a shared temp dir: never follow a planted link or
            // adopt a folder someone else made.
            self.check_own(dir, true)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
            self.chown(dir)?;
        }
        let log = self.log_file();
        if fs::symlink_metadata(&log).is_err() {
            fs::OpenOptions::new().write(true).create_new(true).open(&log).map_err(io(&log))?;
        }
        self.check_own(&log, false)?;
        self.chown(&log)
    }

    /// `path` must be a real directory (or file) owned by this process's user or the
    /// cluster's owner, not a symbolic link.
    fn check_own(&self, path: &Path, dir: bool) -> Result<(), LocalPgError> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::symlink_metadata(path).map_err(io(path))?;
        let kind_ok = if dir { meta.file_type().is_dir() } else { meta.file_type().is_file() };
        let me = Uid::effective().as_raw();
        let owner_ok = meta.uid() == me || self.owner.as_ref().is_some_and(|o| o.uid.as_raw() == meta.uid());
        if kind_ok && owner_ok {
            Ok(())
        } else {
            Err(LocalPgError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!(
                    "refusing to use it: not a {} owned by this user or the cluster's user (a link, or someone else's)",
                    if dir { "directory" } else { "regular file" }
                )),
            })
        }
    }

    fn chown(&self, path: &Path) -> Result<(), LocalPgError> {
        if let Some(owner) = &self.owner {
            nix::unistd::chown(path, Some(owner.uid), Some(owner.gid))
                .map_err(|e| LocalPgError::Io { path: path.to_path_buf(), source: e.into() })?;
        }
        Ok(())
    }

    fn initdb(&self) -> Result<(), LocalPgError> {
        tracing::info!(data_dir = %self.data_dir.display(), "creating the private PostgreSQL cluster (initdb)");
        // initdb runs as the cluster's user: the password goes through a file of its own,
        // in the cluster's folder (0700), removed right after.
        let pwfile = self.cluster_dir.join("initdb.pw");
        let _ = fs::remove_file(&pwfile);
        let mut f =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&pwfile).map_err(io(&pwfile))?;
        f.write_all(self.superuser_password.0.as_bytes()).map_err(io(&pwfile))?;
        drop(f);
        self.chown(&pwfile)?;
        let result = self.run(
            "initdb",
            self.tool("initdb")
                .arg("-D")
                .arg(&self.data_dir)
                .args(["-U", SUPERUSER, "--auth=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["-E", "UTF8", "--locale=C", "--no-instructions"]),
        );
        let _ = fs::remove_file(&pwfile);
        result
    }

    /// Writes Attune's `pg_hba.conf` (password authentication over the socket, nothing
    /// else) unless `current` is it already; true when the file changed.
    fn write_hba(&self, current: &str) -> Result<bool, LocalPgError> {
        let hba = format!(
            "{HBA_HEADER}\n\
             # Every connection authenticates with a password (SCRAM-SHA-256), over the Unix\n\
             # socket only (there is no TCP listener). Passwords: <data_dir>/secrets/.\n\
             # TYPE  DATABASE  USER  METHOD\n\
             local   all       all   scram-sha-256\n"
        );
        if current == hba {
            return Ok(false);
        }
        let path = self.data_dir.join("pg_hba.conf");
        let tmp = self.data_dir.join("pg_hba.conf.attune");
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
        f.write_all(hba.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        self.chown(&tmp)?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(true)
    }

    /// Gives `postgres` the password of `secrets/postgres_password`, in single-user mode
    /// (the server stopped first if it runs): for a cluster an earlier version created
    /// with `trust`, or one whose password file was lost.
    fn reset_superuser_password(&self, file_was_lost: bool) -> Result<(), LocalPgError> {
        tracing::warn!(
            data_dir = %self.data_dir.display(),
            reason = if file_was_lost { "its password file is new" } else { "it was created with trust authentication" },
            "setting the private cluster's superuser password"
        );
        if self.is_running() {
            tracing::warn!("stopping the private cluster to change its authentication: its open sessions end");
            self.stop()?;
        }
        self.clear_stale_pid()?;
        let password = &self.superuser_password.0;
        let sql = format!("ALTER ROLE {SUPERUSER} PASSWORD '{password}';\n");
        let mut child = self
            .tool("postgres")
            .arg("--single")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("postgres")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LocalPgError::Command { what: "postgres --single".into(), detail: e.to_string() })?;
        let written = child.stdin.take().expect("piped").write_all(sql.as_bytes());
        let output = child
            .wait_with_output()
            .map_err(|e| LocalPgError::Command { what: "postgres --single".into(), detail: e.to_string() })?;
        // Single-user mode exits 0 after a failed statement: read what it said.
        let said = String::from_utf8_lossy(&output.stderr).replace(password.as_str(), "***");
        if written.is_err() || !output.status.success() || said.contains("ERROR:") || said.contains("FATAL:") {
            return Err(LocalPgError::Command { what: "setting the superuser password".into(), detail: said });
        }
        Ok(())
    }

    /// Settings Attune owns, rewritten at every start so a moved folder still works.
    fn write_settings(&self, durability: Durability) -> Result<(), LocalPgError> {
        let mut settings = format!(
            "# Written by attune at every start; edits are overwritten.\n\
             listen_addresses = ''\n\
             unix_socket_directories = '{}'\n\
             max_connections = 300\n\
             shared_buffers = '256MB'\n\
             # Work tables churn; their own thresholds (see the migrations) need a short nap.\n\
             autovacuum_naptime = '5s'\n\
             password_encryption = 'scram-sha-256'\n",
            self.socket_dir.display().to_string().replace('\'', "''")
        );
        if durability == Durability::Ephemeral {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
            // A test process drops its database at its end with its (single-threaded)
            // runtime blocked: a connection of its own caught mid-handshake then answers
            // nothing, and PostgreSQL 15's DROP DATABASE waits for every backend of the
            // cluster to absorb a signal barrier, which one in authentication does not —
            // every test's DROP (and every gap wait of the change-log readers, behind those
            // transactions) stalled for the default 60 s. Ended after 2 s instead.
            settings.push_str("authentication_timeout = '2s'\n");
        }
        let path = self.data_dir.join("attune.conf");
        fs::write(&path, settings).map_err(io(&path))?;
        self.chown(&path)?;

        let main_conf = self.data_dir.join("postgresql.conf");
        let current = fs::read_to_string(&main_conf).map_err(io(&main_conf))?;
        if !current.contains("include_if_exists = 'attune.conf'") {
            let mut f = fs::OpenOptions::new().append(true).open(&main_conf).map_err(io(&main_conf))?;
            writeln!(f, "\ninclude_if_exists = 'attune.conf'").map_err(io(&main_conf))?;
        }
        Ok(())
    }

    /// A `postmaster.pid` left by a killed server whose pid now belongs to another
    /// process would stop the new server from starting; one whose pid is gone is
    /// handled by PostgreSQL itself.
    fn clear_stale_pid(&self) -> Result<(), LocalPgError> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(content) = fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid = content.lines().next().and_then(|l| l.trim().parse::<i32>().ok());
        let alive_postgres = pid.is_some_and(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim().starts_with("postgres"))
        });
        if !alive_postgres {
            tracing::warn!(file = %pid_file.display(), "removing a stale postmaster.pid left by a killed server");
            fs::remove_file(&pid_file).map_err(io(&pid_file))?;
        }
        Ok(())
    }

    fn tool(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(name));
        // A clean environment: the server inherits nothing of this process's (database
        // URLs, keys, PG* variables).
        cmd.current_dir(&self.cluster_dir).env_clear().env("LC_ALL", "C").env("HOME", &self.cluster_dir);
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        if let Some(owner) = self.owner.clone() {
            cmd.env("USER", &owner.name);
            // SAFETY: only async-signal-safe syscalls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    nix::unistd::setgroups(&[owner.gid])?;
                    nix::unistd::setgid(owner.gid)?;
                    nix::unistd::setuid(owner.uid)?;
                    Ok(())
                });
            }
        }
        cmd
    }

    fn run(&self, what: &str, cmd: &mut Command) -> Result<(), LocalPgError> {
        let output: Output =
            cmd.output().map_err(|e| LocalPgError::Command { what: what.to_string(), detail: e.to_string() })?;
        if output.status.success() {
            return Ok(());
        }
        let mut detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        let log_tail = fs::read_to_string(self.log_file())
            .map(|log| log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        if !log_tail.is_empty() {
            detail = format!("{detail}\nlast lines of {}:\n{log_tail}", self.log_file().display());
        }
        Err(LocalPgError::Command { what: what.to_string(), detail })
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres` of a supported version:
/// PATH first, then the newest of `/usr/lib/postgresql/*/bin`.
pub fn find_bin_dir() -> Result<PathBuf, LocalPgError> {
    let has_all = |dir: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|t| dir.join(t).is_file());
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).filter(|d| has_all(d)).collect())
        .unwrap_or_default();
    let mut system: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let major = e.file_name().to_str()?.parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    has_all(&bin).then_some((major, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    system.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    candidates.extend(system.into_iter().map(|(_, bin)| bin));

    let mut too_old = None;
    for dir in candidates {
        let Some(major) = server_major(&dir) else {
            continue;
        };
        if major >= MIN_MAJOR {
            return Ok(dir);
        }
        too_old.get_or_insert(LocalPgError::TooOld { found: major.to_string(), dir });
    }
    Err(too_old.unwrap_or(LocalPgError::NoBinaries))
}

fn server_major(dir: &Path) -> Option<u32> {
    let out = Command::new(dir.join("postgres")).arg("--version").output().ok()?;
    // "postgres (PostgreSQL) 15.19 (Debian ...)"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(2)?;
    version.split('.').next()?.parse().ok()
}

/// The password in `path`, generated (hex) when the file does not exist; whether it was.
fn password(path: &Path) -> Result<(Password, bool), LocalPgError> {
    let (value, created) =
        crate::bootstrap::read_or_create_secret(path, || crate::bootstrap::random_hex(24)).map_err(io(path))?;
    let safe = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !safe {
        return Err(LocalPgError::BadPassword { path: path.to_path_buf() });
    }
    Ok((Password(value), created))
}

/// None when this process may run PostgreSQL itself; else the unprivileged user to run it as.
fn cluster_owner() -> Result<Option<Owner>, LocalPgError> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Ok(Some(user)) = User::from_name(name) {
            return Ok(Some(Owner { uid: user.uid, gid: user.gid, name: name.to_string() }));
        }
    }
    Err(LocalPgError::NoUnprivilegedUser)
}

/// `<root>/pg`, unless the unprivileged owner cannot reach it (a root-only parent such as
/// /root): then a folder under the system temp dir named after `root`, so the same root
/// always finds the same cluster.
fn choose_cluster_dir(root: &Path, owner: Option<&Owner>) -> PathBuf {
    let preferred = root.join("pg");
    let Some(owner) = owner else { return preferred };
    if reachable_by(root, owner) {
        return preferred;
    }
    let fallback = std::env::temp_dir().join(format!("attune-pg-{}", short_hash(root)));
    tracing::warn!(
        wanted = %preferred.display(),
        using = %fallback.display(),
        user = %owner.name,
        "the cluster's user cannot reach the data dir; keeping the cluster elsewhere"
    );
    fallback
}

/// Can `owner` traverse every directory down to `dir`?
fn reachable_by(dir: &Path, owner: &Owner) -> bool {
    use std::os::unix::fs::MetadataExt;
    dir.ancestors().all(|d| {
        let Ok(meta) = fs::metadata(d) else {
            return false;
        };
        let mode = meta.mode();
        if meta.uid() == owner.uid.as_raw() {
            mode & 0o100 != 0
        } else if meta.gid() == owner.gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        }
    })
}

/// The socket lives in `<cluster>/run` unless that path is too long for a Unix socket.
fn socket_dir_for(cluster_dir: &Path) -> PathBuf {
    let preferred = cluster_dir.join("run");
    if preferred.as_os_str().len() + "/.s.PGSQL.5432".len() <= MAX_SOCKET_PATH {
        preferred
    } else {
        std::env::temp_dir().join(format!("attune-sock-{}", short_hash(cluster_dir)))
    }
}

pub fn short_hash(path: &Path) -> String {
    hex::encode(&Sha256::digest(path.as_os_str().as_encoded_bytes())[..6])
}
