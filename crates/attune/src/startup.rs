//! Start-up and shutdown of a process: database (configured or private), migrations,
//! keys, system packs, the first admin, then the services until SIGTERM/Ctrl-C, their
//! drain, and the stop of the private cluster. A second SIGTERM/Ctrl-C exits at once.

use std::sync::Arc;

use anyhow::Context as _;
use attune_core::bootstrap::{self, Keys};
use attune_core::local_pg::{Durability, LocalPostgres};
use attune_core::{db, Config, Context, Shutdown};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

use crate::services::{self, Service};

/// Database name used inside the private cluster.
const LOCAL_DATABASE: &str = "attune";

/// The database a process works on, and the private cluster behind it, if any.
struct Database {
    pool: PgPool,
    local: Option<Arc<LocalPostgres>>,
}

impl Database {
    /// Applies pending migrations. On the private cluster they run as the owner role (on a
    /// connection of the superuser's, which then grants the service role); on a configured
    /// server, as the URL's role.
    async fn migrate(&self) -> anyhow::Result<()> {
        let Some(local) = &self.local else {
            return db::migrate(&self.pool).await.context(
                "migrations failed (a role that may not create tables cannot apply them: \
                 run `attune migrate` with the owner's URL first, see docs/operations.md)",
            );
        };
        let mut conn = PgConnection::connect_with(&local.superuser_options(LOCAL_DATABASE).application_name("attune"))
            .await
            .context("cannot reach the private cluster as its superuser")?;
        let result = db::migrate_as_owner(&mut conn).await.context("migrations failed");
        conn.close().await.ok();
        result
    }
}

/// The configured database, or the private cluster: there, the roles are made (or restated)
/// by the superuser, the database belongs to the owner role, and the pool connects as the
/// service role (see attune_core::db).
async fn open_database(config: &Config) -> anyhow::Result<Database> {
    if let Some(url) = &config.database.url {
        let pool = db::connect(url, config.database.max_connections)
            .await
            .with_context(|| format!("cannot connect to the database at database.url ({})", redact(url)))?;
        return Ok(Database { pool, local: None });
    }
    let root = config.data_dir.clone();
    let local = tokio::task::spawn_blocking(move || LocalPostgres::start(&root, Durability::Durable))
        .await?
        .context("cannot start the private PostgreSQL cluster")?;
    let local = Arc::new(local);
    let mut admin = PgConnection::connect_with(&local.superuser_options("postgres").application_name("attune"))
        .await
        .context("cannot reach the private cluster as its superuser")?;
    db::ensure_roles(&mut admin, local.service_password()).await.context("cannot set up the database roles")?;
    let owner = sqlx::query_scalar!(
        r#"SELECT pg_get_userbyid(datdba)::text AS "owner!" FROM pg_database WHERE datname = $1"#,
        LOCAL_DATABASE
    )
    .fetch_optional(&mut admin)
    .await?;
    match owner.as_deref() {
        None => {
            // Two processes may race here; the loser sees duplicate_database and goes on.
            // (A database name cannot be a parameter: this is LOCAL_DATABASE.)
            if let Err(e) = sqlx::query!("CREATE DATABASE attune OWNER attune_owner").execute(&mut admin).await {
                if !matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P04")) {
                    return Err(e.into());
                }
            }
        }
        // Made by an earlier version, as the superuser's.
        Some(owner) if owner != db::OWNER_ROLE => {
            sqlx::query!("ALTER DATABASE attune OWNER TO attune_owner").execute(&mut admin).await?;
        }
        Some(_) => {}
    }
    admin.close().await.ok();
    let options: PgConnectOptions = local.service_options(LOCAL_DATABASE).application_name("attune");
    let pool = db::connect_with(options, config.database.max_connections)
        .await
        .context("cannot reach the private cluster as the service role")?;
    tracing::info!(url = %local.url(LOCAL_DATABASE), "using the private PostgreSQL cluster");
    Ok(Database { pool, local: Some(local) })
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`
fn redact(url: &str) -> String {
    // A password given as a query parameter (`?password=…`) goes too.
    let url = match url.split_once('?') {
        Some((base, query)) => {
            let kept: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", kept.join("&"))
        }
        None => url.to_string(),
    };
    let url = url.as_str();
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub async fn migrate_only(config: Config) -> anyhow::Result<()> {
    let database = open_database(&config).await?;
    let result = database.migrate().await;
    database.pool.close().await;
    stop_local(database.local).await;
    result?;
    println!("migrations applied");
    Ok(())
}

/// Runs `f` on the configured database (joining the private cluster without stopping it:
/// it belongs to the running instance).
pub async fn with_database<F>(config: Config, f: F) -> anyhow::Result<()>
where
    F: for<'a> FnOnce(
        &'a Config,
        &'a PgPool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>,
{
    let database = open_database(&config).await?;
    let result = f(&config, &database.pool).await;
    database.pool.close().await;
    result
}

/// Runs `f` on a connection that may manage roles: on the private cluster its superuser's
/// (joined without stopping it, as [`with_database`]), else one as the configured URL's role.
pub async fn with_admin_connection<F>(config: Config, f: F) -> anyhow::Result<()>
where
    F: for<'a> FnOnce(
        &'a mut PgConnection,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>,
{
    let database = open_database(&config).await?;
    let conn = match &database.local {
        Some(local) => PgConnection::connect_with(&local.superuser_options(LOCAL_DATABASE).application_name("attune"))
            .await
            .context("cannot reach the private cluster as its superuser"),
        None => database.pool.acquire().await.map(|c| c.detach()).context("cannot connect to the database"),
    };
    let result = match conn {
        Ok(mut conn) => {
            let result = f(&mut conn).await;
            conn.close().await.ok();
            result
        }
        Err(e) => Err(e),
    };
    database.pool.close().await;
    result
}

/// Starts the process and runs `services` until a signal, then drains them. Signals are
/// handled from the first moment (see [`handle_signals`]): a signal during start-up lets
/// start-up finish and then starts no service.
pub async fn run_services(config: Config, services: Vec<Service>) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    handle_signals(shutdown.clone())?;
    let database = open_database(&config).await?;
    let result = run_on(&config, &database, &services, shutdown).await;
    database.pool.close().await;
    stop_local(database.local).await;
    result
}

async fn run_on(config: &Config, database: &Database, services: &[Service], shutdown: Shutdown) -> anyhow::Result<()> {
    database.migrate().await?;
    let pool = &database.pool;
    let keys = Keys::load_or_generate(config)?;
    bootstrap::load_system_packs(pool, config).await?;
    if let Some(admin) = bootstrap::ensure_first_admin(pool, config).await? {
        match (&admin.generated_password, &admin.password_file) {
            (Some(password), Some(file)) => println!(
                "First start: created tenant 'default' and user '{}' with password {password}\n(saved in {}; shown only this once)",
                admin.login,
                file.display()
            ),
            _ => println!("First start: created tenant 'default' and user '{}' (password from ATTUNE_ADMIN_PASSWORD)", admin.login),
        }
    }

    if shutdown.is_cancelled() {
        tracing::info!("shutdown requested during start-up; no service started");
        return Ok(());
    }
    let api_listener = if services.contains(&Service::Api) {
        let addr = format!("{}:{}", config.api.host, config.api.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (api.host/api.port, ATTUNE_API_HOST/ATTUNE_API_PORT)"))?;
        let local = listener.local_addr()?;
        println!("Attune API listening on http://{local} (public URL {})", config.public_url());
        if services.contains(&Service::Notifier) {
            println!("WebSocket stream on ws://{local}/ws");
        }
        Some(listener)
    } else {
        None
    };
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    tracing::info!(services = names.join(","), "starting");

    let ctx = Context::new(config.clone(), pool.clone(), keys);
    services::supervise(ctx, services, api_listener, shutdown).await
}

/// A signal that stops the process.
#[derive(Debug, Clone, Copy)]
enum StopSignal {
    Term,
    Int,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
        }
    }

    /// The exit code of a drain this signal cut short: 128 + the signal's number, what a
    /// shell reports for a process the signal killed (143 for SIGTERM, 130 for Ctrl-C).
    fn exit_code(self) -> i32 {
        128 + match self {
            StopSignal::Term => 15,
            StopSignal::Int => 2,
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers. The first signal cancels `shutdown`: every
/// service drains and the process exits 0 once all have returned, however long that takes
/// (there is no bound: a worker waits for its running executions). A second signal, during
/// the drain (or the start-up, or the stop of the private cluster), cuts it short: the
/// process exits at once with [`StopSignal::exit_code`].
fn handle_signals(shutdown: Shutdown) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Installed now, so a signal arriving before the task below first runs is not lost.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    tokio::spawn(async move {
        let first = next_signal(&mut term, &mut int).await;
        tracing::info!(
            signal = first.name(),
            "shutdown requested; draining (send SIGTERM or Ctrl-C again to stop at once)"
        );
        shutdown.cancel();
        let second = next_signal(&mut term, &mut int).await;
        let code = second.exit_code();
        tracing::warn!(
            signal = second.name(),
            code,
            "second signal: drain cut short, exiting now without waiting for the services"
        );
        std::process::exit(code);
    });
    Ok(())
}

async fn next_signal(term: &mut tokio::signal::unix::Signal, int: &mut tokio::signal::unix::Signal) -> StopSignal {
    tokio::select! {
        Some(()) = term.recv() => StopSignal::Term,
        Some(()) = int.recv() => StopSignal::Int,
        // Both streams ended (the runtime is going away): nothing more to wait for.
        else => std::future::pending().await,
    }
}

async fn stop_local(local: Option<Arc<LocalPostgres>>) {
    if let Some(local) = local {
        match tokio::task::spawn_blocking(move || local.stop()).await {
            Ok(Ok(())) => tracing::info!("private PostgreSQL cluster stopped"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "could not stop the private PostgreSQL cluster")
            }
            Err(e) => tracing::error!(error = %e, "could not stop the private PostgreSQL cluster"),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_are_logged_without_their_passwords() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            super::redact("postgres://u@h/db?sslmode=require&password=secret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(super::redact("postgres://h/db"), "postgres://h/db");
    }
}
