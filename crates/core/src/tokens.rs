//! Access tokens (HS256 JWTs) and refresh tokens.
//!
//! An access token carries `sub` (the identity id), `tenant_id`, `role`, `login`, `exp`,
//! `iat` and `jti`. Only HS256 is accepted: `alg: none`, another algorithm, a wrong
//! signature, a changed claim or an expired token are all refused.
//!
//! A refresh token is 256 random bits given to the client once; the database keeps only
//! its SHA-256. Using one revokes it and issues a new pair (rotation); presenting a
//! revoked one again revokes every refresh token of that identity (it was stolen or
//! replayed).

use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::rbac::Role;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub tenant_id: i64,
    pub role: Role,
    pub login: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// Set on tokens made for one execution (`context.api_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<i64>,
}

pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    pub access_ttl_seconds: i64,
    pub refresh_ttl_seconds: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidToken(pub String);

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl_seconds: u64, refresh_ttl_seconds: u64) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl_seconds: access_ttl_seconds as i64,
            refresh_ttl_seconds: refresh_ttl_seconds as i64,
        }
    }

    pub fn issue(&self, identity_id: i64, tenant_id: i64, role: Role, login: &str) -> String {
        self.issue_for(identity_id, tenant_id, role, login, None, self.access_ttl_seconds)
    }

    pub fn issue_for(
        &self,
        identity_id: i64,
        tenant_id: i64,
        role: Role,
        login: &str,
        execution_id: Option<i64>,
        ttl_seconds: i64,
    ) -> String {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: identity_id.to_string(),
            tenant_id,
            role,
            login: login.to_string(),
            exp: now + ttl_seconds,
            iat: now,
            jti: random_token(16),
            execution_id,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The token an execution's process gets on stdin (`context.api_token`): the
    /// `executor` role in the execution's tenant, for as long as the execution may run.
    pub fn issue_execution_token(&self, tenant_id: i64, execution_id: i64, ttl_seconds: i64) -> String {
        self.issue_for(
            0,
            tenant_id,
            Role::Executor,
            &format!("execution/{execution_id}"),
            Some(execution_id),
            ttl_seconds,
        )
    }

    pub fn verify(&self, token: &str) -> Result<Claims, InvalidToken> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(|e| {
            InvalidToken(
                match e.kind() {
                    ErrorKind::ExpiredSignature => "access token expired",
                    ErrorKind::InvalidSignature => "access token signature is invalid",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "access token algorithm is not HS256"
                    }
                    _ => "access token is malformed",
                }
                .to_string(),
            )
        })
    }
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
