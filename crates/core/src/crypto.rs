//! Password hashing (argon2id) and encryption at rest (AES-256-GCM, for secret execution
//! parameters and encrypted datastore values). The key never comes from the database.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes any input with default parameters")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// AES-256-GCM over `plaintext` bound to `aad` (associated data: authenticated, not
/// stored): the output is nonce || ciphertext+tag, and it decrypts only with the same `aad`.
pub fn encrypt_bound(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng as AeadRng, Payload};
    use aes_gcm::Aes256Gcm;
    let cipher = Aes256Gcm::new(key.into());
    let nonce = Aes256Gcm::generate_nonce(&mut AeadRng);
    let mut out = nonce.to_vec();
    out.extend(cipher.encrypt(&nonce, Payload { msg: plaintext, aad }).expect("AES-GCM encrypts any input"));
    out
}

/// Reverses [`encrypt_bound`]; fails on a wrong key, other associated data or tampering.
pub fn decrypt_bound(key: &[u8; 32], data: &[u8], aad: &[u8]) -> Result<Vec<u8>, &'static str> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    use aes_gcm::{Aes256Gcm, Nonce};
    if data.len() < 12 + 16 {
        return Err("ciphertext too short");
    }
    let (nonce, ciphertext) = data.split_at(12);
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad })
        .map_err(|_| "cannot decrypt: wrong encryption key, another item's ciphertext, or damaged data")
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_verify_only_their_password() {
        let h = super::hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify_password("correct horse", &h));
        assert!(!super::verify_password("wrong", &h));
        assert!(!super::verify_password("x", "not a hash"));
    }
}
