//! `attune bench`: measures the event pipeline of a running instance end to end.
//!
//! It logs in, makes sure pack `bench` has a webhook trigger and one enabled rule (to
//! `core.noop`, or to a shell action with `--mode shell`), fires `--events` webhooks with
//! `--concurrency` requests in flight (optionally paced at `--rate` per second), waits for
//! every execution to finish, and reads the figures from the database's own timestamps:
//! events/s, executions/s, and percentiles of webhook accepted → running and → finished.
//! `--mode stream` runs the noop pipeline with `--sockets` WebSocket clients subscribed to
//! executions and adds the stream's delivery latency ([`stream`]). `--mode workflow` runs
//! the workflow scenarios of [`workflow`] instead, `--mode python` submits warm python
//! executions through the API ([`submit`]). A paced run (`--rate`) also times the disk's
//! flushes meanwhile ([`disk`]): they set the floor of its tail.

mod disk;
mod stream;
mod submit;
mod workflow;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// webhook → rule → core.noop (in-process builtin)
    Noop,
    /// webhook → rule → a shell action (`true`): one child process per execution
    Shell,
    /// `POST /api/v1/executions` of a warm python action (`run(params)` returning `{}`):
    /// submit → finished
    Python,
    /// `--timers` interval timers at 1 s for `--seconds`: fire-time precision
    Timers,
    /// the noop pipeline with `--sockets` WebSocket clients on `/ws`: delivery latency
    Stream,
    /// workflow scenarios (`--scenario`): 100 sequential tasks, 50×20 at once, 10,000 items
    Workflow,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// How many webhook events to fire.
    #[arg(long, default_value_t = 10_000)]
    pub events: usize,
    /// Webhook requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Pace the requests at this many per second (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    #[arg(long, value_enum, default_value_t = Mode::Noop)]
    pub mode: Mode,
    /// The instance's API (default: the configured api.host/api.port).
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, default_value = "admin")]
    pub login: String,
    /// Timers mode: how many 1 s interval timers.
    #[arg(long, default_value_t = 1000)]
    pub timers: usize,
    /// Timers mode: how long to let them tick.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Stream mode: WebSocket clients subscribed to executions.
    #[arg(long, default_value_t = 100)]
    pub sockets: usize,
    /// Default: ATTUNE_ADMIN_PASSWORD, else the password saved in the data dir.
    #[arg(long, env = "ATTUNE_BENCH_PASSWORD")]
    pub password: Option<String>,
    /// Workflow mode: which scenario to run.
    #[arg(long, value_enum, default_value_t = workflow::Scenario::All)]
    pub scenario: workflow::Scenario,
    /// Workflow mode: the server's process id, to report its memory (/proc/<pid>/status).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Paced runs: time the disk's flushes in this folder meanwhile (one on the database's
    /// disk). Default: the data dir, when the database is its private cluster.
    #[arg(long, value_name = "DIR")]
    pub disk_probe: Option<std::path::PathBuf>,
}

impl BenchArgs {
    /// The disk probe of a paced run, started ([`disk`]); none for an unpaced one or
    /// without a folder to probe.
    fn disk_probe(&self) -> anyhow::Result<Option<disk::Probe>> {
        match (self.rate, &self.disk_probe) {
            (Some(_), Some(dir)) => disk::Probe::start(dir).map(Some),
            _ => Ok(None),
        }
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.with_context(|| format!("{} is not answering", self.base))?;
        let status = res.status().as_u16();
        Ok((status, res.json().await.unwrap_or(Value::Null)))
    }

    /// POST that may find the thing there already (409).
    async fn ensure(&self, path: &str, body: Value) -> anyhow::Result<()> {
        let (status, answer) = self.call(reqwest::Method::POST, path, Some(body)).await?;
        if status != 201 && status != 409 {
            bail!("POST {path}: {status} {answer}");
        }
        Ok(())
    }
}

/// Runs `job(i)` for each of the `--events`, at most `--concurrency` at once, each started
/// on the `--rate` schedule when there is one; the outcomes in the order they ended.
async fn fire<T, Fut>(args: &BenchArgs, job: impl Fn(usize) -> Fut) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.events {
        if let Some(rate) = args.rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = slots.clone().acquire_owned().await?;
        let run = job(i);
        tasks.spawn(async move {
            let outcome = run.await;
            drop(permit);
            outcome
        });
    }
    let mut outcomes = Vec::with_capacity(args.events);
    while let Some(joined) = tasks.join_next().await {
        outcomes.push(joined?);
    }
    Ok(outcomes)
}

/// The `p`-th percentile (0..=100) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The bench reads its timings from the database; one that is not the server's would
/// never see the work finish (the bench would wait for nothing). Checked by the bench
/// pack: made through the API, it must be in the database the bench reads.
async fn same_database(api: &Api, pool: &PgPool) -> anyhow::Result<()> {
    api.ensure("/api/v1/packs", json!({"ref": "bench", "version": "1.0.0", "description": "attune bench"})).await?;
    let (_, pack) = api.call(reqwest::Method::GET, "/api/v1/packs/ref/bench", None).await?;
    let id = pack["id"].as_i64().context("the bench pack's id")?;
    let here = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM attune.pack WHERE id = $1 AND ref = 'bench') AS "here!""#,
        id
    )
    .fetch_one(pool)
    .await
    .context("cannot read the database the bench uses")?;
    if !here {
        bail!(
            "the database this bench reads is not the one the server at {} uses (its bench pack, id {id}, is not \
             in it): point DATABASE_URL or ATTUNE_DATA_DIR at the server's database, or unset DATABASE_URL",
            api.base
        );
    }
    Ok(())
}

pub async fn run(config: &attune_core::Config, pool: &PgPool, mut args: BenchArgs) -> anyhow::Result<()> {
    if args.disk_probe.is_none() && config.database.url.is_none() {
        // The private cluster's WAL is in the data dir.
        args.disk_probe = Some(config.data_dir.clone());
    }
    let base = args.url.clone().unwrap_or_else(|| format!("http://{}:{}", config.api.host, config.api.port));
    let password = match args.password.clone().or_else(|| config.auth.admin_password.clone()) {
        Some(p) => p,
        None => std::fs::read_to_string(config.data_dir.join("admin_password")).map(|s| s.trim().to_string()).context(
            "no password: pass --password, set ATTUNE_ADMIN_PASSWORD, or run where the data dir holds admin_password",
        )?,
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency).build()?;
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({"login": args.login, "password": password}))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}: is `attune up` running?"))?;
    if !login.status().is_success() {
        bail!("login as {} failed: {}", args.login, login.status());
    }
    let token = login.json::<Value>().await?["access_token"].as_str().unwrap_or_default().to_string();
    let api = Api { http: http.clone(), base: base.clone(), token: token.clone() };
    same_database(&api, pool).await?;

    if args.mode == Mode::Timers {
        return timers(&api, pool, &args).await;
    }
    if args.mode == Mode::Workflow {
        return workflow::run(&api, pool, &args).await;
    }
    if args.mode == Mode::Python {
        return submit::run(&api, pool, &args).await;
    }
    // The bench pack (made by `same_database`): one webhook trigger, one enabled rule for
    // the chosen mode.
    api.ensure("/api/v1/triggers", json!({"ref": "bench.hook", "type": "webhook"})).await?;
    api.ensure("/api/v1/actions", json!({"ref": "bench.true", "runner_type": "shell", "command": "true"})).await?;
    api.ensure("/api/v1/rules", json!({"ref": "bench.noop", "trigger": "bench.hook", "action": "core.noop"})).await?;
    api.ensure("/api/v1/rules", json!({"ref": "bench.shell", "trigger": "bench.hook", "action": "bench.true"})).await?;
    let noop = matches!(args.mode, Mode::Noop | Mode::Stream);
    for (rule, on) in [("bench.noop", noop), ("bench.shell", args.mode == Mode::Shell)] {
        let (_, r) = api.call(reqwest::Method::GET, &format!("/api/v1/rules/ref/{rule}"), None).await?;
        let id = r["id"].as_i64().context("rule id")?;
        api.call(reqwest::Method::PATCH, &format!("/api/v1/rules/{id}"), Some(json!({"enabled": on}))).await?;
    }
    let (_, trigger) = api.call(reqwest::Method::GET, "/api/v1/triggers/ref/bench.hook", None).await?;
    let hook = trigger["webhook_url"].as_str().context("webhook_url")?.to_string();
    let hook = match args.url.as_deref() {
        // The public URL may name another host; fire at the one we were told.
        Some(url) => format!("{url}{}", &hook[hook.find("/api/v1/webhooks/").unwrap_or(0)..]),
        None => hook,
    };

    // Stream mode: every socket hears each execution's three changes (created as
    // `scheduled` by the rule engine, running, succeeded).
    let listeners = match args.mode {
        Mode::Stream => {
            let expected = 3 * args.events;
            println!("connecting {} WebSocket clients", args.sockets);
            Some(stream::Listeners::connect(&base, &token, args.sockets, expected, Duration::from_secs(600)).await?)
        }
        _ => None,
    };
    let baseline = last_event(pool).await?;
    println!(
        "firing {} webhook events at {} concurrency{} ({:?} mode)",
        args.events,
        args.concurrency,
        args.rate.map(|r| format!(", paced at {r}/s")).unwrap_or_default(),
        args.mode
    );
    let probe = args.disk_probe()?;
    let started = Instant::now();
    let accepted = fire(&args, |i| {
        let (http, hook) = (http.clone(), hook.clone());
        async move {
            http.post(&hook).json(&json!({"n": i})).send().await.map(|r| r.status().as_u16() == 202).unwrap_or(false)
        }
    })
    .await?;
    let rejected = accepted.iter().filter(|ok| !**ok).count();
    let fired = started.elapsed();
    if rejected > 0 {
        bail!("{rejected} of {} webhook requests were not accepted", args.events);
    }

    let expected = args.events as i64;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = sqlx::query_scalar!(
            r#"SELECT count(*) AS "done!" FROM attune.execution x JOIN attune.enforcement f ON f.id = x.enforcement_id
                WHERE f.event_id > $1 AND x.status IN ('succeeded', 'failed')"#,
            baseline
        )
        .fetch_one(pool)
        .await?;
        if done >= expected {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {expected} executions finished within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flushes = probe.map(disk::Probe::finish).transpose()?;

    let row = sqlx::query_file!("../../sql/bench/pipeline_figures.sql", baseline).fetch_one(pool).await?;
    let (ingest_s, total_s, failed) = (row.ingest_s, row.total_s, row.failed);
    let (r50, r95, r99) = (row.running_p50, row.running_p95, row.running_p99);
    let (f50, f95, f99) = (row.finished_p50, row.finished_p95, row.finished_p99);
    println!();
    println!("events:                  {}", args.events);
    println!(
        "webhooks accepted in:    {:.2} s ({:.0} events/s by the client's clock)",
        fired.as_secs_f64(),
        args.events as f64 / fired.as_secs_f64()
    );
    println!("events stored over:      {:.2} s ({:.0} events/s)", ingest_s, args.events as f64 / ingest_s.max(1e-9));
    println!(
        "first event → last done: {:.2} s ({:.0} executions/s end to end)",
        total_s,
        args.events as f64 / total_s.max(1e-9)
    );
    println!("accepted → running  ms:  p50 {r50:.1}  p95 {r95:.1}  p99 {r99:.1}");
    println!(
        "  of which, p50 / p99:   {:.1} / {:.1} until the rule engine writes, {:.1} / {:.1} its write, commit and the claim",
        row.to_write_p50, row.to_write_p99, row.from_write_p50, row.from_write_p99
    );
    println!("accepted → finished ms:  p50 {f50:.1}  p95 {f95:.1}  p99 {f99:.1}");
    println!(
        "created → finished ms:   p50 {:.1}  p95 {:.1}  p99 {:.1} (the execution's own life)",
        row.life_p50, row.life_p95, row.life_p99
    );
    println!("failed executions:       {failed}");
    if let Some(flushes) = flushes {
        flushes.print();
    }
    if let Some(listeners) = listeners {
        let (sockets, latencies) = listeners.finish().await?;
        let p = |q| percentile(&latencies, q);
        println!("sockets:                 {sockets}, each received all {} changes", 3 * args.events);
        println!(
            "written → received ms:   p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1} ({} messages)",
            p(50.0),
            p(95.0),
            p(99.0),
            p(100.0),
            latencies.len()
        );
    }
    Ok(())
}

/// Timers mode: N interval timers at 1 s, each with a rule whose criteria are false (the
/// events are matched, nothing runs), ticking for `--seconds`; then the precision of
/// every tick, |fired − scheduled|, from the events' payloads.
async fn timers(api: &Api, pool: &PgPool, args: &BenchArgs) -> anyhow::Result<()> {
    api.ensure("/api/v1/packs", json!({"ref": "bench_timers", "version": "1.0.0"})).await?;
    println!("creating {} interval timers (1 s)", args.timers);
    for i in 0..args.timers {
        api.ensure("/api/v1/triggers", json!({"ref": format!("bench_timers.t{i}"), "type": "timer.interval", "parameters": {"interval_seconds": 1}})).await?;
        api.ensure("/api/v1/rules", json!({"ref": format!("bench_timers.r{i}"), "trigger": format!("bench_timers.t{i}"), "action": "core.noop", "criteria": "false", "enabled": false})).await?;
    }
    let baseline = last_event(pool).await?;
    // Start them together: enable every rule in one statement.
    sqlx::query!("UPDATE attune.rule SET enabled = true WHERE ref LIKE 'bench_timers.%'").execute(pool).await?;
    println!("ticking for {} s", args.seconds);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    sqlx::query!("UPDATE attune.rule SET enabled = false WHERE ref LIKE 'bench_timers.%'").execute(pool).await?;
    let row = sqlx::query_file!("../../sql/bench/timer_figures.sql", baseline).fetch_one(pool).await?;
    let (n, p50, p95, p99, max) = (row.ticks, row.p50, row.p95, row.p99, row.max);
    println!();
    println!("timers:                  {}", args.timers);
    println!("ticks:                   {n} ({:.0}/s)", n as f64 / args.seconds as f64);
    println!("|fired − scheduled| ms:  p50 {p50:.1}  p95 {p95:.1}  p99 {p99:.1}  max {max:.1}");
    Ok(())
}

/// The newest event's id: what a run's figures start after.
async fn last_event(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT COALESCE(max(id), 0) AS "id!" FROM attune.event"#).fetch_one(pool).await
}
