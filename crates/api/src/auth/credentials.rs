//! Checks of new credentials and password hashing, shared by registration and user
//! management.

use crate::error::{excerpt, ApiError};

/// Logins: 1-128 of letters, digits and `_ . @ -`.
pub fn check_login(login: &str) -> Result<(), ApiError> {
    let ok = !login.is_empty()
        && login.len() <= 128
        && login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "login {:?} must be 1-128 letters, digits, '_', '.', '@' or '-'",
            excerpt(login)
        )))
    }
}

pub fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 {
        return Err(ApiError::Unprocessable("password must be at least 8 characters".into()));
    }
    if password.len() > 1024 {
        return Err(ApiError::Unprocessable("password must be at most 1024 bytes".into()));
    }
    Ok(())
}

/// argon2 is deliberately slow: keep it off the async workers.
pub async fn hash_in_background(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || attune_core::crypto::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))
}
