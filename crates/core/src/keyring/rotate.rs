//! `attune keys rotate`: every sealed value — encrypted datastore items and executions'
//! secret parameters — re-sealed under the current key version, in batches, while the
//! services run.
//!
//! Online: nothing is locked while values are re-sealed; each batch is written with a
//! compare-and-swap on the old ciphertext, so a value rewritten meanwhile keeps what its
//! writer wrote (already under the current key). Resumable: a batch commits on its own,
//! and a later run selects only what is still under an older version, so running it again
//! after a crash (or after `--max-batches`) carries on where it stopped. A value that
//! cannot be opened (its key version is not configured, or it is damaged) is reported,
//! left as it is, and passed over.

use sqlx::PgPool;

use super::Keyring;
use crate::datastore::ItemId;

/// What a rotation did.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Datastore items re-sealed.
    pub items: u64,
    /// Executions whose secret parameters were re-sealed.
    pub parameters: u64,
    pub batches: u64,
    /// Values that could not be opened, each with the reason (naming the key version).
    pub failed: Vec<String>,
    /// `max_batches` ran out before everything was re-sealed.
    pub unfinished: bool,
}

/// Re-seals everything not under `keys`' current version, `batch` values per statement;
/// stops after `max_batches` batches when given. `report` sees the progress after each batch.
pub async fn rotate(
    pool: &PgPool,
    keys: &Keyring,
    batch: i64,
    max_batches: Option<u64>,
    mut report: impl FnMut(&Progress),
) -> Result<Progress, sqlx::Error> {
    let mut progress = Progress::default();
    let version = keys.current_version();
    let out_of_batches = |p: &Progress| max_batches.is_some_and(|max| p.batches >= max);

    let mut after = 0i64;
    loop {
        if out_of_batches(&progress) {
            progress.unfinished = true;
            return Ok(progress);
        }
        let rows = sqlx::query_file!("../../sql/keys/stale_items.sql", version, after, batch).fetch_all(pool).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let (mut ids, mut old, mut new) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            let item = ItemId { tenant_id: row.tenant_id, scope: &row.scope, owner_id: row.owner_id, key: &row.key };
            match crate::datastore::open(keys, item, &row.ciphertext, row.key_version) {
                Ok(value) => {
                    ids.push(row.id);
                    new.push(crate::datastore::seal(keys, item, &value).0);
                    old.push(row.ciphertext);
                }
                Err(e) => progress.failed.push(format!("{e} (tenant {}, item id {})", row.tenant_id, row.id)),
            }
        }
        let done = sqlx::query_file!("../../sql/keys/reseal_items.sql", &ids, &old, &new, version)
            .execute(pool)
            .await?
            .rows_affected();
        progress.items += done;
        progress.batches += 1;
        report(&progress);
    }

    let mut after = 0i64;
    loop {
        if out_of_batches(&progress) {
            progress.unfinished = true;
            return Ok(progress);
        }
        let rows =
            sqlx::query_file!("../../sql/keys/stale_parameters.sql", version, after, batch).fetch_all(pool).await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let (mut ids, mut old, mut new) = (Vec::new(), Vec::new(), Vec::new());
        for row in rows {
            match keys.open_tagged(&row.secret_params) {
                Ok(plain) => {
                    ids.push(row.id);
                    new.push(keys.seal_tagged(&plain));
                    old.push(row.secret_params);
                }
                Err(e) => progress.failed.push(format!("secret parameters of execution {}: {e}", row.id)),
            }
        }
        let done = sqlx::query_file!("../../sql/keys/reseal_parameters.sql", &ids, &old, &new)
            .execute(pool)
            .await?
            .rows_affected();
        progress.parameters += done;
        progress.batches += 1;
        report(&progress);
    }
    Ok(progress)
}

/// One line of `attune keys status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCount {
    pub what: String,
    pub version: i32,
    pub count: i64,
}

/// How many sealed values each key version holds.
pub async fn versions(pool: &PgPool) -> Result<Vec<VersionCount>, sqlx::Error> {
    sqlx::query_file_as!(VersionCount, "../../sql/keys/versions.sql").fetch_all(pool).await
}
