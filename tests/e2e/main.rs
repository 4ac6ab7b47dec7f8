//! The end-to-end suite. One module per area; each test is named after its scenario in
//! the test plan where it has one (`t1_7_...`), else after the behaviour it proves.

mod crash_safety;
mod datastore;
mod definitions;
mod exactly_once;
mod foundation;
mod hostile;
mod identity;
mod packs;
mod pipeline;
mod secure_defaults;
mod sensors;
mod timers;
