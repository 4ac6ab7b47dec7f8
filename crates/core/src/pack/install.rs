//! Writes a loaded pack into the database, in the caller's transaction: a first load
//! inserts it, a reload updates every definition in place (keeping ids and webhook keys)
//! and removes the ones the directory no longer has. Any failure rolls the whole pack back.

use std::path::Path;

use rand::RngCore;
use sqlx::PgConnection;

use super::loader::PackDefinition;
use super::spec::{ActionDef, RuleDef, SensorDef, TriggerDef};
use super::{FileError, PackError};
use crate::domain::Ref;

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub pack_id: i64,
    /// False when the pack was already loaded with the same content hash.
    pub changed: bool,
}

/// A fresh, unguessable webhook key (256 bits, hex).
pub fn new_webhook_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Installs `pack` for `tenant` (None = system pack). Packs whose content hash is
/// unchanged are left alone unless `force`.
pub async fn install(
    conn: &mut PgConnection,
    tenant: Option<i64>,
    pack: &PackDefinition,
    force: bool,
) -> Result<Installed, PackError> {
    let existing: Option<(i64, Option<String>)> = sqlx::query_as(
        "SELECT id, content_hash FROM attune.pack WHERE COALESCE(tenant_id, 0) = COALESCE($1, 0) AND ref = $2 FOR UPDATE",
    )
    .bind(tenant)
    .bind(pack.meta.pack_ref.as_str())
    .fetch_optional(&mut *conn)
    .await?;

    let pack_id = match existing {
        Some((id, hash)) if !force && hash.as_deref() == Some(pack.content_hash.as_str()) => {
            return Ok(Installed { pack_id: id, changed: false });
        }
        Some((id, _)) => {
            sqlx::query(
                "UPDATE attune.pack SET label = $2, version = $3, description = $4, path = $5, content_hash = $6, updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .bind(&pack.meta.label)
            .bind(&pack.meta.version)
            .bind(&pack.meta.description)
            .bind(pack.dir.to_string_lossy().as_ref())
            .bind(&pack.content_hash)
            .execute(&mut *conn)
            .await?;
            id
        }
        None => {
            sqlx::query_scalar(
                "INSERT INTO attune.pack (tenant_id, ref, label, version, description, path, content_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(tenant)
            .bind(pack.meta.pack_ref.as_str())
            .bind(&pack.meta.label)
            .bind(&pack.meta.version)
            .bind(&pack.meta.description)
            .bind(pack.dir.to_string_lossy().as_ref())
            .bind(&pack.content_hash)
            .fetch_one(&mut *conn)
            .await?
        }
    };

    for t in &pack.triggers {
        write_trigger(conn, tenant, pack_id, t, Mode::Upsert).await?;
    }
    for a in &pack.actions {
        write_action(conn, tenant, pack_id, a, Mode::Upsert).await?;
    }
    for s in &pack.sensors {
        let trigger_id =
            resolve(conn, "trigger", tenant, &s.trigger).await?.expect("checked by the loader: the pack defines it");
        write_sensor(conn, tenant, pack_id, s, trigger_id).await?;
    }
    let mut problems = Vec::new();
    for r in &pack.rules {
        let file = pack.rule_files.get(r.rule_ref.as_str()).cloned().unwrap_or_else(|| pack.dir.join("rules"));
        let trigger_id = resolve(conn, "trigger", tenant, &r.trigger).await?;
        let action_id = resolve(conn, "action", tenant, &r.action).await?;
        let (Some(trigger_id), Some(action_id)) = (trigger_id, action_id) else {
            if trigger_id.is_none() {
                problems.push(missing(&file, "trigger", &r.trigger));
            }
            if action_id.is_none() {
                problems.push(missing(&file, "action", &r.action));
            }
            continue;
        };
        write_rule(conn, tenant, pack_id, r, trigger_id, action_id, Mode::Upsert).await?;
    }
    if !problems.is_empty() {
        return Err(PackError::Invalid(problems));
    }

    // Definitions the directory no longer has. Rules go first: they point at the rest.
    let keep = |refs: Vec<&Ref>| refs.into_iter().map(|r| r.to_string()).collect::<Vec<_>>();
    for (table, refs) in [
        ("rule", keep(pack.rules.iter().map(|r| &r.rule_ref).collect())),
        ("sensor", keep(pack.sensors.iter().map(|s| &s.sensor_ref).collect())),
        ("action", keep(pack.actions.iter().map(|a| &a.action_ref).collect())),
        ("trigger", keep(pack.triggers.iter().map(|t| &t.trigger_ref).collect())),
    ] {
        let result = sqlx::query(&format!("DELETE FROM attune.{table} WHERE pack_id = $1 AND ref <> ALL($2)"))
            .bind(pack_id)
            .bind(&refs)
            .execute(&mut *conn)
            .await;
        if let Err(sqlx::Error::Database(db)) = &result {
            if db.code().as_deref() == Some("23503") {
                return Err(PackError::invalid(
                    pack.dir.join(format!("{table}s")),
                    None,
                    format!(
                        "a {table} this reload would remove is still used by a rule of another pack ({}); remove that rule first",
                        db.message()
                    ),
                ));
            }
        }
        result?;
    }
    Ok(Installed { pack_id, changed: true })
}

fn missing(file: &Path, kind: &str, r: &Ref) -> FileError {
    FileError {
        file: file.to_path_buf(),
        field: Some(kind.to_string()),
        message: format!("{kind} {:?} does not exist (neither in this pack nor in a loaded pack)", r.as_str()),
    }
}

/// How a definition is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new definition: an existing ref is a unique violation (the API's 409).
    Create,
    /// Insert, or update the definition of the same ref in place (pack reloads, PATCH).
    Upsert,
}

const INSERT_TRIGGER: &str = include_str!("../../../../sql/definitions/insert_trigger.sql");
const UPSERT_TRIGGER: &str = concat!(
    include_str!("../../../../sql/definitions/insert_trigger.sql"),
    include_str!("../../../../sql/definitions/on_conflict_trigger.sql")
);
const INSERT_ACTION: &str = include_str!("../../../../sql/definitions/insert_action.sql");
const UPSERT_ACTION: &str = concat!(
    include_str!("../../../../sql/definitions/insert_action.sql"),
    include_str!("../../../../sql/definitions/on_conflict_action.sql")
);
const UPSERT_SENSOR: &str = concat!(
    include_str!("../../../../sql/definitions/insert_sensor.sql"),
    include_str!("../../../../sql/definitions/on_conflict_sensor.sql")
);
const INSERT_RULE: &str = include_str!("../../../../sql/definitions/insert_rule.sql");
const UPSERT_RULE: &str = concat!(
    include_str!("../../../../sql/definitions/insert_rule.sql"),
    include_str!("../../../../sql/definitions/on_conflict_rule.sql")
);

fn statement(mode: Mode, insert: &str, upsert: &str) -> String {
    format!("{} RETURNING id", if mode == Mode::Create { insert } else { upsert }.trim_end())
}

/// Writes a trigger; returns its id (None when an upsert found the ref in another pack).
pub async fn write_trigger(
    conn: &mut PgConnection,
    tenant: Option<i64>,
    pack_id: i64,
    t: &TriggerDef,
    mode: Mode,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(&statement(mode, INSERT_TRIGGER, UPSERT_TRIGGER))
        .bind(tenant)
        .bind(pack_id)
        .bind(t.trigger_ref.as_str())
        .bind(&t.description)
        .bind(t.trigger_type.as_str())
        .bind(&t.parameters)
        .bind(&t.payload_schema)
        .bind(new_webhook_key())
        .bind(&t.webhook_secret)
        .bind(t.enabled)
        .fetch_optional(conn)
        .await
}

/// Writes an action; returns its id (None when an upsert found the ref in another pack).
pub async fn write_action(
    conn: &mut PgConnection,
    tenant: Option<i64>,
    pack_id: i64,
    a: &ActionDef,
    mode: Mode,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(&statement(mode, INSERT_ACTION, UPSERT_ACTION))
        .bind(tenant)
        .bind(pack_id)
        .bind(a.action_ref.as_str())
        .bind(&a.description)
        .bind(a.runner_type.as_str())
        .bind(&a.entry_point)
        .bind(&a.command)
        .bind(&a.code)
        .bind(&a.parameters)
        .bind(&a.params.schema)
        .bind(&a.params.secret)
        .bind(&a.output_schema)
        .bind(a.timeout_seconds)
        .bind(a.retry.as_ref().map(|r| serde_json::to_value(r).expect("a retry policy serialises")))
        .bind(a.concurrency)
        .bind(&a.secrets)
        .bind(&a.workflow)
        .bind(&a.http)
        .bind(&a.container)
        .bind(&a.with_items)
        .bind(a.enabled)
        .fetch_optional(conn)
        .await
}

async fn write_sensor(
    conn: &mut PgConnection,
    tenant: Option<i64>,
    pack_id: i64,
    s: &SensorDef,
    trigger_id: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(&statement(Mode::Upsert, "", UPSERT_SENSOR))
        .bind(tenant)
        .bind(pack_id)
        .bind(s.sensor_ref.as_str())
        .bind(&s.description)
        .bind(s.runner_type.as_str())
        .bind(&s.entry_point)
        .bind(s.poll_interval)
        .bind(trigger_id)
        .bind(&s.config)
        .bind(s.enabled)
        .fetch_optional(conn)
        .await
}

/// Writes a rule whose trigger and action are resolved; returns its id.
pub async fn write_rule(
    conn: &mut PgConnection,
    tenant: Option<i64>,
    pack_id: i64,
    r: &RuleDef,
    trigger_id: i64,
    action_id: i64,
    mode: Mode,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(&statement(mode, INSERT_RULE, UPSERT_RULE))
        .bind(tenant)
        .bind(pack_id)
        .bind(r.rule_ref.as_str())
        .bind(&r.description)
        .bind(trigger_id)
        .bind(action_id)
        .bind(&r.criteria)
        .bind(&r.action_params)
        .bind(r.enabled)
        .bind(r.notify_on_trigger)
        .fetch_optional(conn)
        .await
}

/// Id of a trigger or action by ref: the tenant's own first, then a system pack's.
pub async fn resolve(
    conn: &mut PgConnection,
    table: &str,
    tenant: Option<i64>,
    r: &Ref,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(&format!(
        "SELECT id FROM attune.{table} WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL)
         ORDER BY tenant_id NULLS LAST LIMIT 1"
    ))
    .bind(r.as_str())
    .bind(tenant)
    .fetch_optional(conn)
    .await
}
