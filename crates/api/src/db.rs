//! Database access for requests: every tenant-scoped request works in a transaction run
//! as the non-owner role `attune_api` with `attune.tenant_id` set, so PostgreSQL's
//! row-level security confines it to the caller's tenant even if a query forgot to.

use sqlx::{PgPool, Postgres, Transaction};

use crate::error::ApiError;

pub type Tx = Transaction<'static, Postgres>;

/// Begins a transaction confined to `tenant_id` (one round trip for both settings).
pub async fn tenant_tx(pool: &PgPool, tenant_id: i64) -> Result<Tx, ApiError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('role', 'attune_api', true), set_config('attune.tenant_id', $1, true)")
        .bind(tenant_id.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Reads one row in a tenant-confined transaction: `sql` binds `$1` = `key` and `$2` = the
/// caller's tenant. No row is a 404 naming `what` and the key.
pub async fn read_one<T, K>(pool: &PgPool, tenant_id: i64, sql: &str, key: K, what: &str) -> Result<T, ApiError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
    K: for<'q> sqlx::Encode<'q, Postgres> + sqlx::Type<Postgres> + std::fmt::Debug + Send,
{
    let label = format!("{key:?}");
    let mut tx = tenant_tx(pool, tenant_id).await?;
    let row = sqlx::query_as::<_, T>(sql).bind(key).bind(tenant_id).fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    row.ok_or_else(|| ApiError::NotFound(format!("{what} {label} not found")))
}

/// `select` narrowed to one definition by id (`$1`) visible to tenant `$2` (its own or a
/// system pack's); `alias` qualifies the columns when `select` joins.
pub fn definition_by_id(select: &str, alias: &str) -> String {
    format!("{select} WHERE {alias}id = $1 AND ({alias}tenant_id = $2 OR {alias}tenant_id IS NULL)")
}

/// `select` narrowed to one definition by ref (`$1`): the tenant's (`$2`) own, else the
/// system pack's.
pub fn definition_by_ref(select: &str, alias: &str) -> String {
    format!(
        "{select} WHERE {alias}ref = $1 AND ({alias}tenant_id = $2 OR {alias}tenant_id IS NULL) ORDER BY {alias}tenant_id NULLS LAST LIMIT 1"
    )
}
