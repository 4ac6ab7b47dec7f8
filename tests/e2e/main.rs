//! The end-to-end suite. One module per area; each test is named after its scenario in
//! the test plan where it has one (`t1_7_...`), else after the behaviour it proves.

mod bridge;
mod change_log;
mod cli;
mod console;
mod container_runner;
mod crash_safety;
mod datastore;
mod definitions;
mod exactly_once;
mod foundation;
mod history;
mod hostile;
mod http_runner;
mod identity;
mod ingest;
mod inquiries;
mod key_rotation;
mod metrics;
mod orchestration;
mod pack_delivery;
mod packs;
mod pipeline;
mod reporting;
mod runtimes;
mod secrets;
mod secure_defaults;
mod sensors;
mod streaming;
mod templates;
mod timers;
mod wakeups;
mod workflows;
