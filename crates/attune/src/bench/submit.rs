//! `attune bench --mode python`: a warm python action as a client sees it.
//!
//! It uploads pack `bench_py` (as `attune pack install` would; reloads it when there) with action `nap`, a python
//! function that returns `{}` at once (`entry_point: nap.py:run`, so the worker's warm
//! interpreters run it), runs one execution to start the interpreter (its start is not
//! what is measured), then submits `--events` executions with `POST /api/v1/executions`,
//! `--concurrency` in flight, paced at `--rate`. Each submission's instant is the client's
//! clock just before the request; the rest are the database's timestamps (one machine,
//! one clock): submit → running, submit → finished (the action itself takes ~0 ms, so
//! this is the platform's overhead), and the execution's own created → finished.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use serde_json::json;
use sqlx::PgPool;

use super::{Api, BenchArgs};

/// The action every submission runs.
const ACTION: &str = "bench_py.nap";

pub async fn run(api: &Api, pool: &PgPool, args: &BenchArgs) -> anyhow::Result<()> {
    python_pack(api).await?;
    let (first, _) = submit(api, 0).await?;
    wait_finished(pool, &[first]).await?;

    println!(
        "submitting {} executions of {ACTION} at {} concurrency{}",
        args.events,
        args.concurrency,
        args.rate.map(|r| format!(", paced at {r}/s")).unwrap_or_default()
    );
    let probe = args.disk_probe()?;
    let submitted = super::fire(args, |i| {
        let api = Api { http: api.http.clone(), base: api.base.clone(), token: api.token.clone() };
        async move { submit(&api, i).await }
    })
    .await?;
    let (mut ids, mut sent) = (Vec::with_capacity(args.events), Vec::with_capacity(args.events));
    for one in submitted {
        let (id, at) = one?;
        ids.push(id);
        sent.push(at);
    }
    wait_finished(pool, &ids).await?;
    let flushes = probe.map(super::disk::Probe::finish).transpose()?;

    let row = sqlx::query_file!("../../sql/bench/submit_figures.sql", &ids, &sent).fetch_one(pool).await?;
    println!();
    println!("executions:              {}", ids.len());
    println!(
        "submit → running   ms:   p50 {:.1}  p95 {:.1}  p99 {:.1}",
        row.running_p50, row.running_p95, row.running_p99
    );
    println!(
        "submit → finished  ms:   p50 {:.1}  p95 {:.1}  p99 {:.1} (the action itself returns at once)",
        row.finished_p50, row.finished_p95, row.finished_p99
    );
    println!("created → finished ms:   p50 {:.1}  p95 {:.1}  p99 {:.1}", row.life_p50, row.life_p95, row.life_p99);
    println!("not succeeded:           {}", row.failed);
    if let Some(flushes) = flushes {
        flushes.print();
    }
    if row.failed > 0 {
        bail!("{} of {} executions did not succeed", row.failed, ids.len());
    }
    Ok(())
}

/// Submits one execution: its id and the client's clock just before the request (seconds
/// since the epoch).
async fn submit(api: &Api, n: usize) -> anyhow::Result<(i64, f64)> {
    let at = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let (status, view) = api
        .call(reqwest::Method::POST, "/api/v1/executions", Some(json!({"action": ACTION, "parameters": {"n": n}})))
        .await?;
    if status != 201 {
        bail!("POST /api/v1/executions: {status} {view}");
    }
    Ok((view["id"].as_i64().context("the execution's id")?, at))
}

/// Waits until every execution of `ids` has ended.
async fn wait_finished(pool: &PgPool, ids: &[i64]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = sqlx::query_scalar!(
            r#"SELECT count(*) AS "done!" FROM attune.execution WHERE id = ANY($1) AND finished_at IS NOT NULL"#,
            ids
        )
        .fetch_one(pool)
        .await?;
        if done >= ids.len() as i64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {done} of {} executions finished within 10 minutes", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pack `bench_py`, uploaded (or reloaded when there): `nap` returns at once, `work`
/// sleeps 8 ms (the `py40` workflow scenario's task).
pub(super) async fn python_pack(api: &Api) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let files = [
        ("pack.yaml", "ref: bench_py\nversion: 1.0.0\ndescription: attune bench --mode python\n"),
        ("actions/nap.py", "def run(params):\n    return {}\n"),
        ("actions/nap.yaml", "name: nap\nrunner_type: python\nentry_point: nap.py:run\n"),
        ("actions/work.py", "import time\n\n\ndef run(params):\n    time.sleep(0.008)\n    return {}\n"),
        ("actions/work.yaml", "name: work\nrunner_type: python\nentry_point: work.py:run\n"),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the pack"))?;
        std::fs::write(path, text)?;
    }
    let archive = attune_cli::archive::pack_dir(dir.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    // A new pack, else a new version of the one there (as `attune pack install` does).
    for path in ["/api/v1/packs/upload", "/api/v1/packs/bench_py/reload"] {
        let res = api
            .http
            .post(format!("{}{path}", api.base))
            .bearer_auth(&api.token)
            .header(reqwest::header::CONTENT_TYPE, "application/gzip")
            .body(archive.clone())
            .send()
            .await
            .with_context(|| format!("{} is not answering", api.base))?;
        match res.status().as_u16() {
            200 | 201 => return Ok(()),
            409 if path.ends_with("upload") => continue,
            status => bail!("POST {path} (pack bench_py): {status} {}", res.text().await.unwrap_or_default()),
        }
    }
    Ok(())
}
