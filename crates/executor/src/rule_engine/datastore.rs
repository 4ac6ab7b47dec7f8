//! The datastore as a batch's templates see it (`datastore.KEY`, `secret.KEY`; API.md
//! "Templates"): which items to load for the batch — only for the tenants of matches whose
//! rule reads some, one query for all of them — and each rule's view of them in its
//! template context.

use std::collections::HashMap;

use attune_core::datastore::TemplateItems;
use attune_core::domain::templates::{DatastoreReads, KeyReads, DATASTORE, SECRET};
use serde_json::{Map, Value};

use super::cache::RuleCache;
use super::{tenant_of, EventRow};

/// What the rules matching the batch's events read, by the tenant each match runs in.
/// Empty when none reads the datastore (the batch then loads nothing).
pub(super) fn wanted(cache: &RuleCache, events: &[EventRow]) -> HashMap<i64, DatastoreReads> {
    let mut wanted: HashMap<i64, DatastoreReads> = HashMap::new();
    for event in events.iter().filter(|e| cache.reads_datastore(e.trigger_id)) {
        for rule in cache.rules_of(event.trigger_id).iter().filter(|r| !r.reads.is_empty()) {
            if let Some(tenant_id) = tenant_of(rule.row.tenant_id, event.tenant_id) {
                wanted.entry(tenant_id).or_default().merge(&rule.reads);
            }
        }
    }
    wanted
}

/// Adds `datastore` and `secret` to a rule's context: the items of its tenant it reads
/// (all loaded ones when it reads keys it does not name). A key that is missing, expired
/// or unreadable is absent, so it reads as undefined (null) — see [`check_readable`].
pub(super) fn add_to_context(reads: &DatastoreReads, items: Option<&TemplateItems>, context: &mut Value) {
    let empty = Map::new();
    let (datastore, secret) = items.map_or((&empty, &empty), |i| (&i.datastore, &i.secret));
    context[DATASTORE] = Value::Object(view(&reads.datastore, datastore));
    context[SECRET] = Value::Object(view(&reads.secret, secret));
}

fn view(reads: &KeyReads, items: &Map<String, Value>) -> Map<String, Value> {
    if reads.any {
        return items.clone();
    }
    reads.keys.iter().filter_map(|k| items.get(k).map(|v| (k.clone(), v.clone()))).collect()
}

/// Fails when the templates read a secret whose value cannot be decrypted (the error names
/// the key). Templates that read secrets by keys they do not name fail on any such item
/// of their tenant: which one they would read is only known while rendering.
pub(super) fn check_readable(reads: &KeyReads, items: Option<&TemplateItems>) -> Result<(), String> {
    let Some(items) = items else { return Ok(()) };
    match items.unreadable.iter().find(|(key, _)| reads.covers(key)) {
        Some((_, error)) => Err(error.clone()),
        None => Ok(()),
    }
}

/// The secret values a rule may read: what its messages must never show.
pub(super) fn secrets_read<'a>(reads: &KeyReads, items: Option<&'a TemplateItems>) -> Vec<&'a Value> {
    let Some(items) = items else { return Vec::new() };
    items.secret.iter().filter(|(key, _)| reads.covers(key)).map(|(_, value)| value).collect()
}
