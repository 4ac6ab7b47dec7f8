//! List envelopes: `{"data": [...], "total": N, "limit": L, "offset": O}`.

use serde::Serialize;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Limit and offset from a query: default 50, a limit above 1000 is clamped to 1000,
/// a limit below 1 or a negative offset is a 400.
pub fn resolve(limit: Option<i64>, offset: Option<i64>) -> Result<(i64, i64), ApiError> {
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(l) if l < 1 => return Err(ApiError::BadRequest(format!("limit must be at least 1, got {l}"))),
        Some(l) => l.min(MAX_LIMIT),
    };
    let offset = match offset {
        None => 0,
        Some(o) if o < 0 => return Err(ApiError::BadRequest(format!("offset must not be negative, got {o}"))),
        Some(o) => o,
    };
    Ok((limit, offset))
}
