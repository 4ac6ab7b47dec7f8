//! Start-up and shutdown of a process: database (configured or private), migrations,
//! keys, system packs, the first admin, then the services until SIGTERM/Ctrl-C.

use std::sync::Arc;

use anyhow::Context as _;
use attune_core::bootstrap::{self, Keys};
use attune_core::local_pg::{Durability, LocalPostgres};
use attune_core::{db, Config, Context, Shutdown};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

use crate::services::{self, Service};

/// Database name used inside the private cluster.
const LOCAL_DATABASE: &str = "attune";

/// The database a process works on, and the private cluster behind it, if any.
struct Database {
    pool: PgPool,
    local: Option<Arc<LocalPostgres>>,
}

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
    let admin =
        db::connect_with(local.connect_options("postgres"), 1).await.context("cannot reach the private cluster")?;
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#,
        LOCAL_DATABASE
    )
    .fetch_one(&admin)
    .await?;
    if !exists {
        // Two processes may race here; the loser sees duplicate_database and goes on.
        // (A database name cannot be a parameter: this is LOCAL_DATABASE.)
        if let Err(e) = sqlx::query!("CREATE DATABASE attune").execute(&admin).await {
            if !matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P04")) {
                return Err(e.into());
            }
        }
    }
    admin.close().await;
    let options: PgConnectOptions = local.connect_options(LOCAL_DATABASE).application_name("attune");
    let pool = db::connect_with(options, config.database.max_connections).await?;
    tracing::info!(url = %local.url(LOCAL_DATABASE), "using the private PostgreSQL cluster");
    Ok(Database { pool, local: Some(local) })
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`
fn redact(url: &str) -> String {
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
    let result = db::migrate(&database.pool).await.context("migrations failed");
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

pub async fn run_services(config: Config, services: Vec<Service>) -> anyhow::Result<()> {
    let database = open_database(&config).await?;
    let result = run_on(&config, &database.pool, &services).await;
    database.pool.close().await;
    stop_local(database.local).await;
    result
}

async fn run_on(config: &Config, pool: &PgPool, services: &[Service]) -> anyhow::Result<()> {
    db::migrate(pool).await.context("migrations failed")?;
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

    let shutdown = Shutdown::new();
    let api_listener = if services.contains(&Service::Api) {
        let addr = format!("{}:{}", config.api.host, config.api.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (api.host/api.port, ATTUNE_API_HOST/ATTUNE_API_PORT)"))?;
        let local = listener.local_addr()?;
        println!("Attune API listening on http://{local} (public URL {})", config.public_url());
        Some(listener)
    } else {
        None
    };
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    tracing::info!(services = names.join(","), "starting");

    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        signal_token.cancel();
    });
    let ctx = Context::new(config.clone(), pool.clone(), keys);
    services::supervise(ctx, services, api_listener, shutdown).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
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
