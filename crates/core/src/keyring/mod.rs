//! The encryption keys, by version. One key is current: everything sealed now is sealed
//! under it. The previous keys are kept for reading what was sealed before a rotation
//! (`attune keys rotate` re-seals it under the current key, docs/datastore.md).
//!
//! A key is written `v<N>:<base64 of 32 bytes>`; a bare base64 key is version 1. A value
//! sealed under a version this process does not have fails with an error naming that
//! version — never garbage, never a guess with another key.
//!
//! Two kinds of sealed data carry their version differently:
//! - a datastore item keeps it in its `key_version` column ([`crate::datastore`]);
//! - a secret-parameter blob (`execution.secret_params`) starts with a 6-byte header,
//!   [`TAG`] then the version as a big-endian u32, then nonce || ciphertext+tag
//!   ([`Keyring::seal_tagged`]).

pub mod rotate;

use std::collections::BTreeMap;

use base64::Engine;

use crate::crypto;

/// The first two bytes of a tagged blob: a marker and the format (1).
pub const TAG: [u8; 2] = [0xA7, 0x01];
const HEADER: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("sealed under key version {version}, which this process does not have (it has {have}); add that key to ATTUNE_ENCRYPTION_PREVIOUS_KEYS")]
    UnknownVersion { version: i32, have: String },
    #[error("{0}")]
    Damaged(&'static str),
}

/// The process's encryption keys by version, and which one is current.
#[derive(Clone)]
pub struct Keyring {
    current: i32,
    keys: BTreeMap<i32, [u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring {{ current: {}, versions: [{}] }}", self.current, self.versions())
    }
}

impl Keyring {
    /// One key, version 1.
    pub fn single(key: [u8; 32]) -> Keyring {
        Keyring { current: 1, keys: BTreeMap::from([(1, key)]) }
    }

    /// `current` and the keys accepted for reading; one version may not name two keys.
    pub fn new(
        current: (i32, [u8; 32]),
        previous: impl IntoIterator<Item = (i32, [u8; 32])>,
    ) -> Result<Keyring, String> {
        let mut keys = BTreeMap::from([current]);
        for (version, key) in previous {
            match keys.insert(version, key) {
                Some(other) if other != key => {
                    return Err(format!("key version {version} is given twice, with two different keys"));
                }
                _ => {}
            }
        }
        Ok(Keyring { current: current.0, keys })
    }

    /// Parses `v<N>:<base64>` (or bare base64: version 1).
    pub fn parse_key(text: &str) -> Result<(i32, [u8; 32]), String> {
        let text = text.trim();
        let (version, b64) = match text.strip_prefix('v').and_then(|rest| rest.split_once(':')) {
            Some((n, b64)) => {
                let version: i32 = n.parse().map_err(|_| format!("key version {n:?} is not a number"))?;
                if version < 1 {
                    return Err(format!("key version {version}: versions start at 1"));
                }
                (version, b64)
            }
            None => (1, text),
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap_or_default();
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            format!("key version {version} (<{} characters>): expected the base64 encoding of 32 bytes", b64.len())
        })?;
        Ok((version, key))
    }

    /// 32 random bytes: a new key.
    pub fn random_key() -> [u8; 32] {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        key
    }

    /// `v<N>:<base64>`.
    pub fn format_key(version: i32, key: &[u8; 32]) -> String {
        format!("v{version}:{}", base64::engine::general_purpose::STANDARD.encode(key))
    }

    /// Every key written out as [`Keyring::format_key`] does: (the current one, the others).
    pub fn formatted(&self) -> (String, Vec<String>) {
        let others = self.keys.iter().filter(|(v, _)| **v != self.current).map(|(v, k)| Keyring::format_key(*v, k));
        (Keyring::format_key(self.current, self.current_key()), others.collect())
    }

    pub fn current_version(&self) -> i32 {
        self.current
    }

    pub fn current_key(&self) -> &[u8; 32] {
        &self.keys[&self.current]
    }

    /// The highest version this process knows.
    pub fn newest_version(&self) -> i32 {
        *self.keys.keys().next_back().expect("a keyring holds its current key")
    }

    /// The versions held, e.g. `1, 2`.
    pub fn versions(&self) -> String {
        self.keys.keys().map(i32::to_string).collect::<Vec<_>>().join(", ")
    }

    fn key(&self, version: i32) -> Result<&[u8; 32], KeyError> {
        self.keys.get(&version).ok_or_else(|| KeyError::UnknownVersion { version, have: self.versions() })
    }

    /// Seals `plain` bound to `aad` under the current key: (nonce || ciphertext, version).
    pub fn seal(&self, plain: &[u8], aad: &[u8]) -> (Vec<u8>, i32) {
        (crypto::encrypt_bound(self.current_key(), plain, aad), self.current)
    }

    /// Opens what [`Keyring::seal`] sealed under `version`.
    pub fn open(&self, version: i32, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, KeyError> {
        crypto::decrypt_bound(self.key(version)?, sealed, aad).map_err(KeyError::Damaged)
    }

    /// Seals `plain` under the current key into a blob that carries its version.
    pub fn seal_tagged(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 12 + plain.len() + 16);
        out.extend_from_slice(&TAG);
        out.extend_from_slice(&(self.current as u32).to_be_bytes());
        out.extend(crypto::encrypt_bound(self.current_key(), plain, &[]));
        out
    }

    /// The key version of a tagged blob.
    pub fn tagged_version(blob: &[u8]) -> Result<i32, KeyError> {
        if blob.len() < HEADER || blob[..2] != TAG {
            return Err(KeyError::Damaged("not a sealed value of this format"));
        }
        Ok(u32::from_be_bytes(blob[2..HEADER].try_into().expect("4 bytes")) as i32)
    }

    /// Opens a blob made by [`Keyring::seal_tagged`].
    pub fn open_tagged(&self, blob: &[u8]) -> Result<Vec<u8>, KeyError> {
        let version = Keyring::tagged_version(blob)?;
        crypto::decrypt_bound(self.key(version)?, &blob[HEADER..], &[]).map_err(KeyError::Damaged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_with_and_without_a_version() {
        let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
        assert_eq!(Keyring::parse_key(&b64).unwrap(), (1, [9u8; 32]));
        assert_eq!(Keyring::parse_key(&format!("v7:{b64}")).unwrap(), (7, [9u8; 32]));
        assert_eq!(Keyring::format_key(7, &[9u8; 32]), format!("v7:{b64}"));
        assert!(Keyring::parse_key("v0:abc").unwrap_err().contains("start at 1"));
        assert!(Keyring::parse_key("vx:abc").unwrap_err().contains("not a number"));
        assert!(Keyring::parse_key("v2:c2hvcnQ=").unwrap_err().contains("32 bytes"));
        assert!(Keyring::new((2, [1; 32]), [(2, [3; 32])]).unwrap_err().contains("version 2"));
    }

    #[test]
    fn a_blob_opens_under_its_own_version_only() {
        let old = Keyring::single([1; 32]);
        let blob = old.seal_tagged(b"hunter2");
        assert_eq!(Keyring::tagged_version(&blob).unwrap(), 1);
        let rotated = Keyring::new((2, [2; 32]), [(1, [1; 32])]).unwrap();
        assert_eq!(rotated.open_tagged(&blob).unwrap(), b"hunter2");
        let resealed = rotated.seal_tagged(b"hunter2");
        assert_eq!(Keyring::tagged_version(&resealed).unwrap(), 2);
        let err = old.open_tagged(&resealed).unwrap_err();
        assert!(err.to_string().contains("key version 2"), "{err}");
        let mut tampered = blob.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(rotated.open_tagged(&tampered), Err(KeyError::Damaged(_))));
        assert!(rotated.open_tagged(b"xx").is_err());
    }
}
