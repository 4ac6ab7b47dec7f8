//! `attune bench --mode workflow`: the workflow engine under load, over the REST API.
//!
//! It makes sure pack `bench_wf` holds three workflow actions, then runs the scenarios
//! (`--scenario`, default all), each started with `POST /api/v1/executions` and waited for
//! by polling the database; every figure comes from the executions' own timestamps:
//! - `seq100`: one workflow of 100 sequential `core.noop` tasks: created → finished, ms
//!   per transition, and where a transition's time goes;
//! - `concurrent`: 50 workflows of 20 sequential `core.noop` tasks started at once: total
//!   time, and no task lost or run twice;
//! - `items`: one with-items task over 10,000 items at concurrency 50 running `core.noop`:
//!   time, every item exactly once, and the most items running at once;
//! - `py40` (not in `all`): one workflow of 40 sequential python tasks that each sleep
//!   8 ms in the worker's warm interpreters (pack `bench_py`, uploaded as for `--mode
//!   python`), three runs after one that starts the interpreter: the flow the runtimes
//!   issue compares with Prefect (`bench/peers/prefect/`).
//!
//! With `--server-pid`, the server process's resident memory (`VmRSS`, and `VmHWM`, its
//! high-water mark, reset before each scenario when the kernel allows) is read from
//! `/proc/<pid>/status` around each scenario. A failed check makes the command fail after
//! every figure is printed.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use sqlx::PgPool;

use super::{Api, BenchArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// 100 sequential core.noop tasks in one workflow
    Seq100,
    /// 50 workflows of 20 sequential core.noop tasks at once
    Concurrent,
    /// one with-items task over 10,000 items at concurrency 50
    Items,
    /// all three above, in that order
    All,
    /// 40 sequential warm python tasks of ~8 ms each (three runs after a warm-up)
    Py40,
}

/// Tasks of the `seq100` workflow.
const SEQUENTIAL: usize = 100;
/// Workflows of the `concurrent` scenario, and the tasks of each.
const WORKFLOWS: usize = 50;
const TASKS: usize = 20;
/// Items of the `items` scenario, and how many may run at once.
const ITEMS: usize = 10_000;
const ITEM_CONCURRENCY: usize = 50;
/// Tasks of the `py40` workflow, and its timed runs.
const PYTHON_TASKS: usize = 40;
const PYTHON_RUNS: usize = 3;
/// How long a scenario may take before the bench gives up on it.
const DEADLINE: Duration = Duration::from_secs(1800);

pub async fn run(api: &Api, pool: &PgPool, args: &BenchArgs) -> anyhow::Result<()> {
    let memory = args.server_pid.map(ServerMemory::new).transpose()?;
    api.ensure(
        "/api/v1/packs",
        json!({"ref": "bench_wf", "version": "1.0.0", "description": "attune bench --mode workflow"}),
    )
    .await?;
    api.ensure("/api/v1/actions", chain("bench_wf.seq100", SEQUENTIAL)).await?;
    api.ensure("/api/v1/actions", chain("bench_wf.seq20", TASKS)).await?;
    let each = json!({"name": "each", "action": "core.noop", "with_items": format!("{{{{ range({ITEMS}) | list }}}}"),
                      "concurrency": ITEM_CONCURRENCY});
    api.ensure(
        "/api/v1/actions",
        json!({"ref": "bench_wf.items", "runner_type": "workflow", "workflow": {"tasks": [each]}}),
    )
    .await?;

    let scenarios = match args.scenario {
        Scenario::All => vec![Scenario::Seq100, Scenario::Concurrent, Scenario::Items],
        one => vec![one],
    };
    let mut failed = Vec::new();
    for scenario in scenarios {
        let before = memory.as_ref().map(ServerMemory::start).transpose()?;
        match scenario {
            Scenario::Seq100 => seq100(api, pool, &mut failed).await?,
            Scenario::Concurrent => concurrent(api, pool, &mut failed).await?,
            Scenario::Items => items(api, pool, &mut failed).await?,
            Scenario::Py40 => py40(api, pool, &mut failed).await?,
            Scenario::All => unreachable!("expanded above"),
        }
        if let (Some(memory), Some(before)) = (&memory, before) {
            memory.report(before)?;
        }
        println!();
    }
    if !failed.is_empty() {
        bail!("{} check(s) failed: {}", failed.len(), failed.join("; "));
    }
    Ok(())
}

/// A workflow action `reference` of `n` sequential `core.noop` tasks t1..tn.
fn chain(reference: &str, n: usize) -> Value {
    chain_of(reference, n, "core.noop")
}

/// A workflow action `reference` of `n` sequential tasks t1..tn running `action`.
fn chain_of(reference: &str, n: usize, action: &str) -> Value {
    let tasks: Vec<Value> = (1..=n)
        .map(|i| match i {
            1 => json!({"name": "t1", "action": action}),
            _ => json!({"name": format!("t{i}"), "action": action, "depends_on": [format!("t{}", i - 1)]}),
        })
        .collect();
    json!({"ref": reference, "runner_type": "workflow", "workflow": {"tasks": tasks}})
}

async fn py40(api: &Api, pool: &PgPool, failed: &mut Vec<String>) -> anyhow::Result<()> {
    println!("py40: one workflow of {PYTHON_TASKS} sequential warm python tasks of ~8 ms (bench_py.work)");
    super::submit::python_pack(api).await?;
    api.ensure("/api/v1/actions", chain_of("bench_wf.py40", PYTHON_TASKS, "bench_py.work")).await?;
    // The first run starts the interpreter (its import is not the flow's time).
    let warm_up = start(api, "bench_wf.py40", 1).await?;
    wait(pool, &warm_up).await?;
    let mut times = Vec::new();
    for run in 1..=PYTHON_RUNS {
        let ids = start(api, "bench_wf.py40", 1).await?;
        wait(pool, &ids).await?;
        let f = figures(pool, &ids).await?;
        let n = PYTHON_TASKS as i64;
        println!(
            "  run {run}: workflow created → finished {:.3} s ({:.2} ms per task, of which ~8 ms the task's own sleep)",
            f.total_s,
            f.total_s * 1000.0 / PYTHON_TASKS as f64
        );
        f.check_chain(failed, "py40", &format!("run {run}: "), n);
        times.push(f.total_s);
    }
    times.sort_by(f64::total_cmp);
    println!("  median of {PYTHON_RUNS}:                  {:.3} s", times[times.len() / 2]);
    Ok(())
}

async fn seq100(api: &Api, pool: &PgPool, failed: &mut Vec<String>) -> anyhow::Result<()> {
    println!("seq100: one workflow of {SEQUENTIAL} sequential core.noop tasks");
    let ids = start(api, "bench_wf.seq100", 1).await?;
    wait(pool, &ids).await?;
    let f = figures(pool, &ids).await?;
    let t = sqlx::query_file!("../../sql/bench/workflow_transitions.sql", &ids).fetch_one(pool).await?;
    let n = SEQUENTIAL as i64;
    println!(
        "  workflow created → finished:   {:.3} s ({:.2} ms per transition)",
        f.total_s,
        f.total_s * 1000.0 / SEQUENTIAL as f64
    );
    println!("  per task, p50 / p95 ms:        previous task finished → created {:.2} / {:.2}", t.step_p50, t.step_p95);
    println!("                                 created → running {:.2} / {:.2}", t.start_p50, t.start_p95);
    println!("                                 running → finished {:.2} / {:.2}", t.run_p50, t.run_p95);
    println!(
        "  workflow created → t1 created {:.2} ms; t{SEQUENTIAL} finished → workflow finished {:.2} ms",
        t.workflow_start_p50, t.workflow_end_p50
    );
    f.check_chain(failed, "seq100", "", n);
    Ok(())
}

async fn concurrent(api: &Api, pool: &PgPool, failed: &mut Vec<String>) -> anyhow::Result<()> {
    println!("concurrent: {WORKFLOWS} workflows of {TASKS} sequential core.noop tasks, started at once");
    let ids = start(api, "bench_wf.seq20", WORKFLOWS).await?;
    wait(pool, &ids).await?;
    let f = figures(pool, &ids).await?;
    let t = sqlx::query_file!("../../sql/bench/workflow_transitions.sql", &ids).fetch_one(pool).await?;
    let n = (WORKFLOWS * TASKS) as i64;
    println!("  first created → last finished: {:.3} s ({:.0} tasks/s)", f.total_s, n as f64 / f.total_s.max(1e-9));
    println!("  per task, p50 / p95 ms:        previous task finished → created {:.2} / {:.2}", t.step_p50, t.step_p95);
    println!("                                 created → running {:.2} / {:.2}", t.start_p50, t.start_p95);
    println!("                                 running → finished {:.2} / {:.2}", t.run_p50, t.run_p95);
    let ok = f.workflows == WORKFLOWS as i64
        && f.workflows_succeeded == WORKFLOWS as i64
        && f.children == n
        && f.children_succeeded == n
        && f.distinct_slots == n
        && f.fewest_children == TASKS as i64
        && f.most_children == TASKS as i64;
    check(
        failed,
        "concurrent",
        ok,
        format!(
            "workflows succeeded {} of {WORKFLOWS}; children {} (distinct (workflow, task) {}), succeeded {} \
             (expected {n}); children per workflow {}..{} (expected {TASKS})",
            f.workflows_succeeded,
            f.children,
            f.distinct_slots,
            f.children_succeeded,
            f.fewest_children,
            f.most_children
        ),
    );
    Ok(())
}

async fn items(api: &Api, pool: &PgPool, failed: &mut Vec<String>) -> anyhow::Result<()> {
    println!("items: one with-items task over {ITEMS} items at concurrency {ITEM_CONCURRENCY} (core.noop)");
    let ids = start(api, "bench_wf.items", 1).await?;
    wait(pool, &ids).await?;
    let f = figures(pool, &ids).await?;
    let most = sqlx::query_file_scalar!("../../sql/bench/workflow_peak_running.sql", ids[0]).fetch_one(pool).await?;
    let n = ITEMS as i64;
    println!(
        "  workflow created → finished:   {:.3} s ({:.0} items/s, {:.2} ms per item)",
        f.total_s,
        n as f64 / f.total_s.max(1e-9),
        f.total_s * 1000.0 / n as f64
    );
    println!("  most items running at once:    {most} (limit {ITEM_CONCURRENCY})");
    let ok = f.workflows_succeeded == 1
        && f.children == n
        && f.children_succeeded == n
        && f.distinct_items == n
        && f.item_min == Some(0)
        && f.item_max == Some(n as i32 - 1)
        && most <= ITEM_CONCURRENCY as i64;
    check(
        failed,
        "items",
        ok,
        format!(
            "workflow succeeded: {}; children {}, distinct item_index {} ({:?}..{:?}), succeeded {} (expected {n}, \
             0..{}); at most {most} at once (limit {ITEM_CONCURRENCY})",
            f.workflows_succeeded == 1,
            f.children,
            f.distinct_items,
            f.item_min,
            f.item_max,
            f.children_succeeded,
            n - 1
        ),
    );
    Ok(())
}

/// Starts `count` executions of `action` at once; their ids.
async fn start(api: &Api, action: &str, count: usize) -> anyhow::Result<Vec<i64>> {
    let body = json!({"action": action, "parameters": {}});
    let answers = futures::future::try_join_all(
        (0..count).map(|_| api.call(reqwest::Method::POST, "/api/v1/executions", Some(body.clone()))),
    )
    .await?;
    answers
        .into_iter()
        .map(|(status, answer)| match (status, answer["id"].as_i64()) {
            (201, Some(id)) => Ok(id),
            _ => bail!("POST /api/v1/executions {action}: {status} {answer}"),
        })
        .collect()
}

/// Polls the database until every workflow of `ids` has ended, printing progress every
/// 5 s (children ended / created).
async fn wait(pool: &PgPool, ids: &[i64]) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut next_progress = started + Duration::from_secs(5);
    loop {
        let unfinished =
            sqlx::query_file_scalar!("../../sql/bench/workflow_unfinished.sql", ids).fetch_one(pool).await?;
        if unfinished == 0 {
            return Ok(());
        }
        let now = Instant::now();
        if now >= next_progress {
            let p = sqlx::query_file!("../../sql/bench/workflow_progress.sql", ids).fetch_one(pool).await?;
            println!(
                "  … {:.0} s: {unfinished} workflow(s) running, {} of {} children ended",
                started.elapsed().as_secs_f64(),
                p.ended,
                p.children
            );
            next_progress = now + Duration::from_secs(5);
        }
        if started.elapsed() > DEADLINE {
            bail!("{unfinished} of {} workflow(s) did not end within {} s", ids.len(), DEADLINE.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `sql/bench/workflow_figures.sql` counts of the workflows run.
struct Figures {
    workflows: i64,
    workflows_succeeded: i64,
    total_s: f64,
    children: i64,
    children_succeeded: i64,
    /// Distinct (workflow, task, item) among the children (fewer: one ran twice).
    distinct_slots: i64,
    fewest_children: i64,
    most_children: i64,
    distinct_items: i64,
    item_min: Option<i32>,
    item_max: Option<i32>,
}

/// The figures of the workflows `ids`.
async fn figures(pool: &PgPool, ids: &[i64]) -> sqlx::Result<Figures> {
    sqlx::query_file_as!(Figures, "../../sql/bench/workflow_figures.sql", ids).fetch_one(pool).await
}

impl Figures {
    /// Checks that the one workflow of a sequential chain of `n` tasks succeeded with one
    /// succeeded child per task.
    fn check_chain(&self, failed: &mut Vec<String>, scenario: &str, prefix: &str, n: i64) {
        let succeeded = self.workflows_succeeded == 1;
        let ok = succeeded && self.children == n && self.children_succeeded == n && self.distinct_slots == n;
        let detail = format!(
            "{prefix}workflow succeeded: {succeeded}; children {} (distinct tasks {}), succeeded {} (expected {n} of each)",
            self.children, self.distinct_slots, self.children_succeeded
        );
        check(failed, scenario, ok, detail);
    }
}

fn check(failed: &mut Vec<String>, scenario: &str, ok: bool, detail: String) {
    println!("  check: {} — {detail}", if ok { "ok" } else { "FAILED" });
    if !ok {
        failed.push(format!("{scenario}: {detail}"));
    }
}

/// The server process's memory, from `/proc/<pid>/status`.
struct ServerMemory {
    pid: u32,
}

/// What [`ServerMemory::start`] saw before a scenario.
struct Before {
    rss_kib: u64,
    peak_kib: u64,
    /// Whether the high-water mark was reset (then the peak after is the scenario's own).
    reset: bool,
}

impl ServerMemory {
    fn new(pid: u32) -> anyhow::Result<Self> {
        let memory = Self { pid };
        memory.read().with_context(|| format!("--server-pid {pid}"))?;
        Ok(memory)
    }

    /// (VmRSS, VmHWM) in KiB.
    fn read(&self) -> anyhow::Result<(u64, u64)> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .with_context(|| format!("{path} has no {name} (a kernel thread, or not Linux?)"))
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Reads the memory, then resets the high-water mark (`5` into `clear_refs`).
    fn start(&self) -> anyhow::Result<Before> {
        let (rss_kib, peak_kib) = self.read()?;
        let reset = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok();
        Ok(Before { rss_kib, peak_kib, reset })
    }

    fn report(&self, before: Before) -> anyhow::Result<()> {
        let (rss_kib, peak_kib) = self.read()?;
        let mib = |kib: u64| kib as f64 / 1024.0;
        let peak = if before.reset { "peak during the scenario" } else { "peak since start (could not reset it)" };
        println!(
            "  server memory (pid {}):        RSS {:.0} → {:.0} MiB; VmHWM before {:.0} MiB, {peak} {:.0} MiB",
            self.pid,
            mib(before.rss_kib),
            mib(rss_kib),
            mib(before.peak_kib),
            mib(peak_kib)
        );
        Ok(())
    }
}
