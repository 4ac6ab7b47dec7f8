//! The actions `POST /api/v1/executions` runs, as this API process last read them, so a
//! manual run costs no look-up of its action: one round trip less on the way to the
//! worker.
//!
//! Each entry carries `attune.definition_version` as it was when the entry was read (every
//! change to an action or a rule moves it, in the changing transaction). A run admitted on
//! an entry is inserted only if the version is still that one — the run statement checks
//! it (`sql/execution/run.sql`) — so a run is never admitted on a definition that has since
//! changed: when the version moved, the action is read again and the run admitted again. A
//! refusal (a disabled action, a role that may not run it, invalid parameters) is answered
//! from an entry only after the version is found unchanged. Entries are per tenant, read
//! under the tenant's row-level security, and dropped all at once when a newer version is
//! read or when there are [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use attune_core::domain::{ParamSchema, RunnerType};
use serde_json::Value;

/// Entries kept at most (all are dropped when a new one would exceed it).
pub const MAX_ENTRIES: usize = 4096;

/// An action as a manual run needs it.
#[derive(Debug)]
pub struct CachedAction {
    pub id: i64,
    pub action_ref: String,
    pub runner_type: RunnerType,
    pub schema: Result<ParamSchema, String>,
    pub secret_params: Vec<String>,
    pub enabled: bool,
    pub timeout_seconds: Option<i32>,
    pub retry: Option<Value>,
    pub run_roles: Option<Vec<String>>,
    /// `attune.definition_version` when it was read.
    pub version: i64,
}

#[derive(Default)]
struct Entries {
    /// By tenant and the ref the request named.
    by_name: HashMap<(i64, String), Arc<CachedAction>>,
    /// The newest version read.
    version: i64,
}

#[derive(Default)]
pub struct ActionCache {
    entries: Mutex<Entries>,
}

impl ActionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry for `name` (the ref as the request named it) in `tenant`, if any.
    pub fn get(&self, tenant: i64, name: &str) -> Option<Arc<CachedAction>> {
        self.lock().by_name.get(&(tenant, name.to_string())).cloned()
    }

    /// Keeps `action`, read just now for `name` in `tenant`.
    pub fn put(&self, tenant: i64, name: &str, action: Arc<CachedAction>) {
        let mut entries = self.lock();
        if action.version < entries.version {
            // Read before a change another request has seen already.
            return;
        }
        if action.version > entries.version || entries.by_name.len() >= MAX_ENTRIES {
            *entries = Entries { version: action.version, ..Entries::default() };
        }
        entries.by_name.insert((tenant, name.to_string()), action);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_name.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: i64, version: i64) -> Arc<CachedAction> {
        Arc::new(CachedAction {
            id,
            action_ref: "p.a".into(),
            runner_type: RunnerType::Python,
            schema: Ok(ParamSchema::default()),
            secret_params: Vec::new(),
            enabled: true,
            timeout_seconds: None,
            retry: None,
            run_roles: None,
            version,
        })
    }

    #[test]
    fn entries_are_per_tenant_and_a_newer_version_drops_the_older_ones() {
        let cache = ActionCache::default();
        cache.put(1, "p.a", action(10, 5));
        cache.put(2, "p.a", action(20, 5));
        assert_eq!(cache.get(1, "p.a").unwrap().id, 10);
        assert_eq!(cache.get(2, "p.a").unwrap().id, 20);
        assert!(cache.get(3, "p.a").is_none() && cache.get(1, "p.b").is_none());
        // An entry read before a change already seen is not kept.
        cache.put(1, "p.b", action(11, 4));
        assert!(cache.get(1, "p.b").is_none());
        // A newer version: everything read before it goes.
        cache.put(1, "p.b", action(11, 6));
        assert!(cache.get(1, "p.a").is_none() && cache.get(2, "p.a").is_none());
        assert_eq!((cache.get(1, "p.b").unwrap().id, cache.len()), (11, 1));
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = ActionCache::default();
        for i in 0..MAX_ENTRIES as i64 {
            cache.put(i, "p.a", action(i, 1));
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        cache.put(-1, "p.a", action(-1, 1));
        assert_eq!(cache.len(), 1);
        assert!(cache.get(0, "p.a").is_none());
    }
}
