//! Database access for requests: every tenant-scoped request works in a transaction run
//! as the non-owner role `attune_api` with `attune.tenant_id` set, so PostgreSQL's
//! row-level security confines it to the caller's tenant even if a query forgot to.

use sqlx::{PgPool, Postgres, Transaction};

use crate::error::ApiError;

pub type Tx = Transaction<'static, Postgres>;

/// Begins a transaction confined to `tenant_id`, in one round trip: `BEGIN` and the
/// settings go as one simple query (the tenant id is a number, so writing it into the text
/// is safe). Its statements are planned for their parameters (`plan_cache_mode = auto`,
/// where the services' hot path runs generic plans: `attune_core::db::connect_with`): the
/// API's reads take optional filters (`$2 IS NULL OR e.id = $2`), which only a plan made
/// for the values turns into a lookup of one partition by primary key.
pub async fn tenant_tx(pool: &PgPool, tenant_id: i64) -> Result<Tx, ApiError> {
    let begin = format!(
        "BEGIN; SET LOCAL role attune_api; SET LOCAL attune.tenant_id = '{tenant_id}'; SET LOCAL plan_cache_mode = auto"
    );
    Ok(pool.begin_with(begin).await?)
}

/// The row of a one-row read, or a 404 naming `what` and its key.
pub fn the_one<T>(rows: Vec<T>, what: &str, key: impl std::fmt::Display) -> Result<T, ApiError> {
    rows.into_iter().next().ok_or_else(|| ApiError::not_found(what, key))
}
