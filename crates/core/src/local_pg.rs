//! The private PostgreSQL cluster: what `attune up` and the test suite run on when no
//! database URL is configured.
//!
//! The cluster lives in `<root>/pg` (data in `data/`, Unix socket in `run/`, no TCP port),
//! is created with the system's `initdb` once, reused on the next start, and stopped by
//! [`LocalPostgres::stop`]. PostgreSQL refuses to run as root, so when this process is
//! root the cluster's processes run as `postgres` (else `nobody`), which owns the data.
//!
//! Everything here is blocking (it runs `initdb` and `pg_ctl`); call it from
//! `spawn_blocking` in async code.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::unistd::{Gid, Uid, User};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;

/// Oldest server major version Attune supports.
const MIN_MAJOR: u32 = 14;
/// Longest Unix socket path the kernel takes (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

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

        let owner = cluster_owner()?;
        let cluster_dir = choose_cluster_dir(&root, owner.as_ref());
        let pg = LocalPostgres {
            data_dir: cluster_dir.join("data"),
            socket_dir: socket_dir_for(&cluster_dir),
            cluster_dir,
            bin_dir,
            owner,
        };
        pg.prepare_dirs()?;
        if !pg.data_dir.join("PG_VERSION").exists() {
            pg.initdb()?;
        }
        pg.write_settings(durability)?;
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
        }
        Ok(pg)
    }

    /// Connection options for database `database` over the Unix socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).username("postgres").database(database)
    }

    /// The same, as a URL (for printing and for child processes).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@localhost/{database}?host={}", self.socket_dir.display())
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
        self.run(
            "initdb",
            self.tool("initdb").arg("-D").arg(&self.data_dir).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-instructions",
            ]),
        )
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
             autovacuum_naptime = '5s'\n",
            self.socket_dir.display().to_string().replace('\'', "''")
        );
        if durability == Durability::Ephemeral {
            settings.push_str("fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n");
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
        cmd.current_dir(&self.cluster_dir).env("LC_ALL", "C").env_remove("PGDATA");
        if let Some(owner) = self.owner.clone() {
            cmd.env("USER", &owner.name).env("HOME", &self.cluster_dir);
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
