//! The datastore's values at rest: an encrypted item is AES-256-GCM ciphertext under the
//! process's encryption key (`ATTUNE_ENCRYPTION_KEY`, never in the database), with a fresh
//! nonce per write, the key version beside it, and the item's identity (tenant, scope,
//! owner, key) as associated data — so a ciphertext copied onto another row, or sealed
//! under a key version this process does not have, fails with an error saying so.

use serde_json::Value;

use crate::crypto;

/// The version of the key this process seals with.
pub const KEY_VERSION: i32 = 1;

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

/// Seals `value` for `item`; returns the ciphertext and the key version.
pub fn seal(key: &[u8; 32], item: ItemId<'_>, value: &Value) -> (Vec<u8>, i32) {
    let plain = serde_json::to_vec(value).expect("JSON serialises");
    (crypto::encrypt_bound(key, &plain, &item.associated_data(KEY_VERSION)), KEY_VERSION)
}

/// Opens a value sealed by [`seal`]; the error names the item and what is wrong.
pub fn open(key: &[u8; 32], item: ItemId<'_>, ciphertext: &[u8], version: Option<i32>) -> Result<Value, String> {
    let version = version.unwrap_or(KEY_VERSION);
    if version != KEY_VERSION {
        return Err(format!(
            "datastore item {:?} was sealed under key version {version}, which this server does not have (it has {KEY_VERSION})",
            item.key
        ));
    }
    let plain = crypto::decrypt_bound(key, ciphertext, &item.associated_data(version))
        .map_err(|e| format!("datastore item {:?}: {e}", item.key))?;
    serde_json::from_slice(&plain)
        .map_err(|e| format!("datastore item {:?}: the decrypted value is not JSON: {e}", item.key))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_value_opens_only_for_its_own_item_and_key() {
        let key = [3u8; 32];
        let item = ItemId { tenant_id: 1, scope: "tenant", owner_id: None, key: "password" };
        let (sealed, version) = seal(&key, item, &json!("s3cret"));
        assert_eq!(open(&key, item, &sealed, Some(version)).unwrap(), json!("s3cret"));
        let (again, _) = seal(&key, item, &json!("s3cret"));
        assert_ne!(sealed, again, "two writes of one value differ");
        let moved = ItemId { key: "other", ..item };
        assert!(open(&key, moved, &sealed, Some(version)).unwrap_err().contains("another item's ciphertext"));
        let other_tenant = ItemId { tenant_id: 2, ..item };
        assert!(open(&key, other_tenant, &sealed, Some(version)).is_err());
        assert!(open(&[4u8; 32], item, &sealed, Some(version)).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(open(&key, item, &tampered, Some(version)).is_err());
        assert!(open(&key, item, &sealed, Some(7)).unwrap_err().contains("key version 7"));
    }
}
