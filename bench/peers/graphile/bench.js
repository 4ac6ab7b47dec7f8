// The graphile-worker peer of `attune bench` (scripts/bench-peers.sh runs both on one
// private cluster and prints the ratio).
//
//   node bench.js --url postgres://USER:PASSWORD@localhost/DB?host=/socket/dir \
//       [--jobs 20000] [--concurrency 24] [--latency-jobs 200] [--latency-rate 100]
//
// The URL may come from GRAPHILE_BENCH_URL instead (keeps a password off the command line).
//
// Two phases, one JSON line on stdout at the end:
// 1. Drain: `--jobs` noop jobs are inserted in one statement, then one `run()` at
//    `--concurrency` works them off. The clock runs from the `run()` call to the last
//    job's completion (graphile-worker emits `job:complete` after the job's row is gone),
//    so worker start-up counts against the peer.
// 2. Latency: with the same runner still up, `--latency-jobs` single `addJob` calls paced
//    at `--latency-rate` per second (by schedule, not one after the other, so a slow add
//    does not slow the pace). Each job's latency is from just before its `addJob` call to
//    its task function starting: the peer of Attune's webhook accepted → running.
//
// Percentiles interpolate like PostgreSQL's percentile_cont, which `attune bench` uses.
"use strict";

const { run, makeWorkerUtils, Logger } = require("graphile-worker");
const { Client } = require("pg");

const DRAIN_DEADLINE_MS = 10 * 60 * 1000;
const LATENCY_DEADLINE_MS = 60 * 1000;

function parseArgs(argv) {
  const opts = { url: process.env.GRAPHILE_BENCH_URL || null, jobs: 20000, concurrency: 24, latencyJobs: 200, latencyRate: 100 };
  const names = {
    "--url": "url",
    "--jobs": "jobs",
    "--concurrency": "concurrency",
    "--latency-jobs": "latencyJobs",
    "--latency-rate": "latencyRate",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || argv[i + 1] === undefined) {
      throw new Error(`unknown or incomplete option ${argv[i]} (options: ${Object.keys(names).join(", ")})`);
    }
    opts[key] = key === "url" ? argv[i + 1] : Number(argv[i + 1]);
    if (key !== "url" && !(opts[key] > 0)) throw new Error(`${argv[i]} must be a positive number`);
  }
  if (!opts.url) throw new Error("--url or GRAPHILE_BENCH_URL is required (the database graphile-worker may use)");
  return opts;
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const round = (x, digits) => (x === null ? null : Number(x.toFixed(digits)));

/// Resolves when `count()` reaches `target`, rejects after `ms`.
function waitFor(what, count, target, ms) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const tick = () => {
      if (count() >= target) return resolve();
      if (Date.now() > deadline) return reject(new Error(`${what}: only ${count()} of ${target} within ${ms / 1000} s`));
      setTimeout(tick, 1);
    };
    tick();
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  // Quiet, but not blind: graphile-worker's errors still reach stderr.
  const logger = new Logger(() => (level, message) => {
    if (level === "error") console.error(`graphile-worker: ${message}`);
  });

  const utils = await makeWorkerUtils({ connectionString: opts.url, logger });
  await utils.migrate();
  const db = new Client({ connectionString: opts.url });
  await db.connect();
  await db.query("DELETE FROM graphile_worker._private_jobs");
  await db.query(
    "SELECT graphile_worker.add_job('noop', json_build_object('n', n)) FROM generate_series(1, $1::int) AS n",
    [opts.jobs],
  );
  // Statistics for the freshly filled table, as autovacuum would have them for a queue
  // that filled up over time.
  await db.query("ANALYZE graphile_worker._private_jobs");

  let drained = 0;
  let failed = 0;
  const addedAt = new Map();
  const latencies = [];
  const taskList = {
    noop: async () => {},
    latency: async (payload) => {
      latencies.push(nowMs() - addedAt.get(payload.i));
    },
  };

  const drainStart = nowMs();
  let drainEnd = null;
  const runner = await run({ connectionString: opts.url, concurrency: opts.concurrency, noHandleSignals: true, logger, taskList });
  runner.events.on("job:complete", ({ job, error }) => {
    if (job.task_identifier !== "noop") return;
    if (error) failed += 1;
    drained += 1;
    if (drained === opts.jobs) drainEnd = nowMs();
  });
  await waitFor("drain", () => drained, opts.jobs, DRAIN_DEADLINE_MS);
  const drainSeconds = (drainEnd - drainStart) / 1000;

  const adds = [];
  const latencyStart = nowMs();
  for (let i = 0; i < opts.latencyJobs; i++) {
    const due = latencyStart + (i * 1000) / opts.latencyRate;
    const wait = due - nowMs();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    addedAt.set(i, nowMs());
    adds.push(utils.addJob("latency", { i }));
  }
  await Promise.all(adds);
  await waitFor("latency jobs", () => latencies.length, opts.latencyJobs, LATENCY_DEADLINE_MS);
  latencies.sort((a, b) => a - b);

  await runner.stop();
  await utils.release();
  await db.end();

  console.log(
    JSON.stringify({
      peer: "graphile-worker",
      version: require("graphile-worker/package.json").version,
      jobs: opts.jobs,
      concurrency: opts.concurrency,
      drain_s: round(drainSeconds, 3),
      jobs_per_s: Math.round(opts.jobs / drainSeconds),
      failed,
      latency: {
        jobs: opts.latencyJobs,
        rate: opts.latencyRate,
        p50_ms: round(percentile(latencies, 0.5), 2),
        p95_ms: round(percentile(latencies, 0.95), 2),
        p99_ms: round(percentile(latencies, 0.99), 2),
        max_ms: round(latencies[latencies.length - 1], 2),
      },
    }),
  );
}

main().catch((e) => {
  console.error(`graphile peer bench: ${e.message || e}`);
  process.exit(1);
});
