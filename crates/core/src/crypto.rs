//! Password hashing (argon2id). Datastore encryption (AES-256-GCM) joins it with the
//! datastore.

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
