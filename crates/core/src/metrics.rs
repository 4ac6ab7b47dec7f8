//! Process metrics for `GET /metrics` (Prometheus text format).
//!
//! One recorder per process, installed the first time anything records or renders
//! ([`handle`]; idempotent, so the many in-process services of the tests share it). Call
//! sites use the one-line helpers below, so the metric names and labels live here and in
//! docs/operations.md ("Metrics"), nowhere else. Gauges of the work tables and the pool
//! are set by the API when it is scraped.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets of `attune_claim_batch_size` (rows per claim round that took any).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0];

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("attune_claim_batch_size".into()), BATCH_BUCKETS)
            .expect("the claim batch buckets are a non-empty constant")
            .set_buckets_for_metric(Matcher::Full("attune_ingest_batch_size".into()), BATCH_BUCKETS)
            .expect("the batch buckets are a non-empty constant");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed: /metrics will stay empty");
        }
        handle
    })
}

/// The current metrics in Prometheus text format.
pub fn render() -> String {
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

/// A webhook request: `accepted` (an event was created) or refused (any error answer).
pub fn webhook(accepted: bool) {
    handle();
    let outcome = if accepted { "accepted" } else { "refused" };
    metrics::counter!("attune_webhooks_total", "outcome" => outcome).increment(1);
}

/// `n` events created by `source` (webhook, timer, sensor, amqp, api).
pub fn events_created(source: &str, n: u64) {
    handle();
    metrics::counter!("attune_events_total", "source" => source.to_owned()).increment(n);
}

/// `n` enforcements written by the rule engine (rule matches).
pub fn enforcements_created(n: u64) {
    handle();
    metrics::counter!("attune_enforcements_total").increment(n);
}

/// A worker recorded an attempt's result: `status` is the attempt's outcome (a failed
/// attempt that will be retried counts as failed), `runner` its runner type.
pub fn execution_finished(status: &str, runner: &str) {
    handle();
    metrics::counter!("attune_executions_finished_total", "status" => status.to_owned(), "runner" => runner.to_owned())
        .increment(1);
}

/// An execution refused by admission (`reason` is its `failure_reason`) for `runner`.
pub fn admission_failed(reason: &'static str, runner: &str) {
    handle();
    metrics::counter!("attune_admission_failures_total", "reason" => reason, "runner" => runner.to_owned())
        .increment(1);
}

/// One worker claim round that took `n` (> 0) executions.
pub fn claim_batch(n: usize) {
    handle();
    metrics::histogram!("attune_claim_batch_size").record(n as f64);
}

/// A manual run or workflow task handed to an idle lane of the process that created it
/// instead of claimed ([`crate::handoff`]).
pub fn handed() {
    handle();
    metrics::counter!("attune_executions_handed_total").increment(1);
}

/// One commit of the webhook intake wrote `n` requests (group commit).
pub fn ingest_batch(n: usize) {
    handle();
    metrics::histogram!("attune_ingest_batch_size").record(n as f64);
}

/// The LISTEN connection was (re)established after a loss.
pub fn listen_reconnect() {
    handle();
    metrics::counter!("attune_listen_reconnects_total").increment(1);
}

/// Change the worker slots in use by `delta` (+1 when an execution starts, -1 when it ends).
pub fn worker_slots(delta: f64) {
    handle();
    metrics::gauge!("attune_worker_slots_in_use").increment(delta);
}

/// The connection pool at scrape time.
pub fn pool(size: u32, idle: usize) {
    handle();
    metrics::gauge!("attune_db_pool_connections", "state" => "open").set(size as f64);
    metrics::gauge!("attune_db_pool_connections", "state" => "idle").set(idle as f64);
}

/// A work table's depth and the age of its oldest waiting row, at scrape time.
pub fn queue(name: &str, depth: i64, oldest_age_seconds: f64) {
    handle();
    metrics::gauge!("attune_queue_depth", "queue" => name.to_owned()).set(depth as f64);
    metrics::gauge!("attune_queue_oldest_age_seconds", "queue" => name.to_owned()).set(oldest_age_seconds);
}
