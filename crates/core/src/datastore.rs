//! The datastore's values at rest: an encrypted item is AES-256-GCM ciphertext under the
//! process's encryption key (`ATTUNE_ENCRYPTION_KEY`, never in the database), with a fresh
//! nonce per write, the key version beside it, and the item's identity (tenant, scope,
//! owner, key) as associated data — so a ciphertext copied onto another row, or sealed
//! under a key version this process does not have, fails with an error saying so.
//!
//! [`load_for_templates`] reads what templates see of it (`datastore.KEY`, `secret.KEY`):
//! the rule engine per batch of events, workflows per task.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};
use sqlx::PgConnection;

use crate::domain::templates::DatastoreReads;
use crate::execution::MASK;
use crate::keyring::Keyring;

/// Items loaded for a tenant whose templates read keys they do not name
/// (`datastore[name]`): its first items by key, at most this many. Named keys are always
/// loaded, beyond the bound too. A tenant's datastore is configuration (thresholds, URLs,
/// tokens), tens of items in practice; the bound keeps one batch's read small whatever a
/// tenant stores.
pub const ANY_KEY_LIMIT: i64 = 1000;

/// Which item a value belongs to (the associated data of its ciphertext).
#[derive(Debug, Clone, Copy)]
pub struct ItemId<'a> {
    pub tenant_id: i64,
    /// `tenant` or `user`.
    pub scope: &'a str,
    /// The user of a `user`-scoped item.
    pub owner_id: Option<i64>,
    pub key: &'a str,
}

impl ItemId<'_> {
    fn associated_data(&self, version: i32) -> Vec<u8> {
        format!(
            "attune.datastore/v{version}/{}/{}/{}/{}",
            self.tenant_id,
            self.scope,
            self.owner_id.unwrap_or(0),
            self.key
        )
        .into_bytes()
    }
}

/// Seals `value` for `item` under the current key; returns the ciphertext and the key version.
pub fn seal(keys: &Keyring, item: ItemId<'_>, value: &Value) -> (Vec<u8>, i32) {
    let plain = serde_json::to_vec(value).expect("JSON serialises");
    keys.seal(&plain, &item.associated_data(keys.current_version()))
}

/// Opens a value sealed by [`seal`] under `version`; the error names the item and what is wrong.
pub fn open(keys: &Keyring, item: ItemId<'_>, ciphertext: &[u8], version: i32) -> Result<Value, String> {
    let plain = keys
        .open(version, ciphertext, &item.associated_data(version))
        .map_err(|e| format!("datastore item {:?}: {e}", item.key))?;
    serde_json::from_slice(&plain)
        .map_err(|e| format!("datastore item {:?}: the decrypted value is not JSON: {e}", item.key))
}

/// What templates see of one tenant's datastore (tenant scope, unexpired items only).
#[derive(Debug, Default, Clone)]
pub struct TemplateItems {
    /// `datastore.KEY`: an unencrypted item's value; an encrypted one's is `********`
    /// (it is read as `secret.KEY`).
    pub datastore: Map<String, Value>,
    /// `secret.KEY`: the decrypted values of the keys read as secrets (an unencrypted
    /// item's plain value too).
    pub secret: Map<String, Value>,
    /// Keys read as secrets whose value cannot be decrypted, with the reason (naming the
    /// key, never a value). A template that reads one must fail.
    pub unreadable: BTreeMap<String, String>,
}

/// One row of `template_datastore.sql`.
struct ItemRow {
    tenant_id: i64,
    key: String,
    value: Option<Value>,
    ciphertext: Option<Vec<u8>>,
    key_version: Option<i32>,
}

/// Loads, in one query, the items each tenant's templates read (`wanted`, by tenant id):
/// the keys they name, or up to [`ANY_KEY_LIMIT`] items of a tenant whose templates read
/// keys they do not name. Only the keys read as secrets are decrypted. A missing key is
/// simply absent (a template reads it as undefined, so null). A tenant with no item read
/// is absent from the answer.
pub async fn load_for_templates(
    conn: &mut PgConnection,
    keys: &Keyring,
    wanted: &HashMap<i64, DatastoreReads>,
) -> Result<HashMap<i64, TemplateItems>, sqlx::Error> {
    let (mut pair_tenants, mut pair_keys, mut any_tenants) = (Vec::new(), Vec::new(), Vec::new());
    for (&tenant_id, reads) in wanted {
        if reads.datastore.any || reads.secret.any {
            any_tenants.push(tenant_id);
        }
        // A union of sets: each key once.
        for key in reads.datastore.keys.union(&reads.secret.keys) {
            pair_tenants.push(tenant_id);
            pair_keys.push(key.clone());
        }
    }
    if pair_tenants.is_empty() && any_tenants.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query_file_as!(
        ItemRow,
        "../../sql/executor/template_datastore.sql",
        &pair_tenants,
        &pair_keys,
        &any_tenants,
        ANY_KEY_LIMIT
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<i64, TemplateItems> = HashMap::new();
    for row in rows {
        let Some(reads) = wanted.get(&row.tenant_id) else { continue };
        let items = out.entry(row.tenant_id).or_default();
        if items.datastore.contains_key(&row.key) {
            continue;
        }
        let as_secret = reads.secret.covers(&row.key);
        match (row.ciphertext, row.value) {
            (Some(ciphertext), _) => {
                items.datastore.insert(row.key.clone(), Value::String(MASK.into()));
                if as_secret {
                    let item = ItemId { tenant_id: row.tenant_id, scope: "tenant", owner_id: None, key: &row.key };
                    match open(keys, item, &ciphertext, row.key_version.unwrap_or(1)) {
                        Ok(value) => {
                            items.secret.insert(row.key, value);
                        }
                        Err(e) => {
                            items.unreadable.insert(row.key, e);
                        }
                    }
                }
            }
            (None, value) => {
                let value = value.unwrap_or(Value::Null);
                if as_secret {
                    items.secret.insert(row.key.clone(), value.clone());
                }
                items.datastore.insert(row.key, value);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_value_opens_only_for_its_own_item_and_key() {
        let key = Keyring::single([3u8; 32]);
        let item = ItemId { tenant_id: 1, scope: "tenant", owner_id: None, key: "password" };
        let (sealed, version) = seal(&key, item, &json!("s3cret"));
        assert_eq!(open(&key, item, &sealed, version).unwrap(), json!("s3cret"));
        let (again, _) = seal(&key, item, &json!("s3cret"));
        assert_ne!(sealed, again, "two writes of one value differ");
        let moved = ItemId { key: "other", ..item };
        assert!(open(&key, moved, &sealed, version).unwrap_err().contains("another item's ciphertext"));
        let other_tenant = ItemId { tenant_id: 2, ..item };
        assert!(open(&key, other_tenant, &sealed, version).is_err());
        assert!(open(&Keyring::single([4u8; 32]), item, &sealed, version).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(open(&key, item, &tampered, version).is_err());
        assert!(open(&key, item, &sealed, 7).unwrap_err().contains("key version 7"));
        let rotated = Keyring::new((2, [5u8; 32]), [(1, [3u8; 32])]).unwrap();
        assert_eq!(open(&rotated, item, &sealed, version).unwrap(), json!("s3cret"));
        let (resealed, v2) = seal(&rotated, item, &json!("s3cret"));
        assert_eq!(v2, 2);
        assert!(open(&key, item, &resealed, v2).unwrap_err().contains("key version 2"));
    }
}
