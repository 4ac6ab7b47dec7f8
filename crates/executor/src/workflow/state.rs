//! The workflows' states as the engine saved them ([`StateCache`]): a step takes the state
//! from here while the stored `version` is still the one saved, and reads it again
//! ([`stored_state`]) when another executor stepped the workflow since.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use attune_core::domain::templates::{value_reads, DatastoreReads};
use attune_core::domain::workflow::WorkflowDef;
use serde_json::{Map, Value};

use super::flow::{Flow, TaskState};

/// A workflow's state as this engine last saved it (`version`).
pub struct Saved {
    pub version: i64,
    pub def: WorkflowDef,
    /// What the definition's templates read of the datastore.
    pub reads: DatastoreReads,
    pub tasks: BTreeMap<String, TaskState>,
    pub vars: Map<String, Value>,
    pub items: Map<String, Value>,
}

/// The states of the workflows this engine stepped lately, as it saved them: a step of a
/// workflow whose stored version is still the one saved here (no other executor stepped it
/// since) takes its definition, task states, variables and with-items lists from here
/// rather than reading and parsing them again — for a long workflow the largest part of a
/// step — and writes back only the task states that changed.
#[derive(Default)]
pub struct StateCache {
    saved: Mutex<HashMap<i64, Saved>>,
}

/// Most workflows the state cache keeps (it starts over beyond).
const STATE_CACHE_ENTRIES: usize = 256;

impl StateCache {
    /// The saved state of workflow `id`, taken out (put back once the step has committed).
    pub fn take(&self, id: i64) -> Option<Saved> {
        self.saved.lock().unwrap_or_else(|e| e.into_inner()).remove(&id)
    }

    pub fn put(&self, id: i64, saved: Saved) {
        let mut states = self.saved.lock().unwrap_or_else(|e| e.into_inner());
        if states.len() >= STATE_CACHE_ENTRIES {
            states.clear();
        }
        states.insert(id, saved);
    }
}

/// The state to cache after a committed step.
pub fn saved(version: i64, flow: Flow, reads: DatastoreReads) -> Saved {
    Saved { version, def: flow.def, reads, tasks: flow.tasks, vars: flow.vars, items: flow.items }
}

/// A workflow's state as stored (`lock_step.sql` returned it: this engine had not cached
/// it, or another executor stepped the workflow since); an error names what cannot be read.
pub fn stored_state(
    version: i64,
    definition: Option<Value>,
    tasks: Option<Value>,
    variables: Option<Value>,
    items: Option<Value>,
) -> Result<Saved, String> {
    let definition = definition.ok_or("the stored workflow state has no definition")?;
    let reads = value_reads(&definition);
    let def: WorkflowDef =
        serde_json::from_value(definition).map_err(|e| format!("the stored workflow state cannot be read: {e}"))?;
    let tasks = tasks.and_then(|t| serde_json::from_value::<BTreeMap<String, TaskState>>(t).ok()).unwrap_or_default();
    Ok(Saved { version, def, reads, tasks, vars: object(variables), items: object(items) })
}

/// The JSON object in `v` (none, or not an object: empty).
pub fn object(v: Option<Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}
