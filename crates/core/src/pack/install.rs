//! Writes a loaded pack into the database, in the caller's transaction: a first load
//! inserts it, a reload updates every definition in place (keeping ids and webhook keys)
//! and removes the ones the directory no longer has. Any failure rolls the whole pack back.

use std::path::Path;

use rand::RngCore;
use sqlx::PgConnection;

use super::loader::PackDefinition;
use super::spec::{ActionDef, RuleDef, SensorDef, TriggerDef};
use super::{FileError, PackError};
use crate::domain::{Ref, RunnerType, TriggerType};

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
    let existing = sqlx::query!(
        "SELECT id, content_hash FROM attune.pack WHERE COALESCE(tenant_id, 0) = COALESCE($1::bigint, 0) AND ref = $2 FOR UPDATE",
        tenant,
        pack.meta.pack_ref.as_str(),
    )
    .fetch_optional(&mut *conn)
    .await?;
    let path = pack.dir.to_string_lossy();
    let meta = &pack.meta;
    let pack_id = match existing {
        Some(row) if !force && row.content_hash.as_deref() == Some(pack.content_hash.as_str()) => {
            return Ok(Installed { pack_id: row.id, changed: false });
        }
        Some(row) => {
            sqlx::query!(
                "UPDATE attune.pack SET label = $2, version = $3, description = $4, path = $5, content_hash = $6,
                        updated_at = now()
                  WHERE id = $1",
                row.id,
                meta.label,
                meta.version,
                meta.description,
                path.as_ref(),
                pack.content_hash,
            )
            .execute(&mut *conn)
            .await?;
            row.id
        }
        None => {
            sqlx::query_scalar!(
                "INSERT INTO attune.pack (tenant_id, ref, label, version, description, path, content_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                tenant,
                meta.pack_ref.as_str(),
                meta.label,
                meta.version,
                meta.description,
                path.as_ref(),
                pack.content_hash,
            )
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
        let trigger_id = resolve(conn, RefKind::Trigger, tenant, &s.trigger)
            .await?
            .expect("checked by the loader: the pack defines it");
        write_sensor(conn, tenant, pack_id, s, trigger_id).await?;
    }
    let mut problems = Vec::new();
    for r in &pack.rules {
        let file = pack.rule_files.get(r.rule_ref.as_str()).cloned().unwrap_or_else(|| pack.dir.join("rules"));
        let trigger_id = resolve(conn, RefKind::Trigger, tenant, &r.trigger).await?;
        let action_id = resolve(conn, RefKind::Action, tenant, &r.action).await?;
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
        let result = match table {
            "rule" => sqlx::query!("DELETE FROM attune.rule WHERE pack_id = $1 AND ref <> ALL($2)", pack_id, &refs),
            "sensor" => sqlx::query!("DELETE FROM attune.sensor WHERE pack_id = $1 AND ref <> ALL($2)", pack_id, &refs),
            "action" => sqlx::query!("DELETE FROM attune.action WHERE pack_id = $1 AND ref <> ALL($2)", pack_id, &refs),
            _ => sqlx::query!("DELETE FROM attune.trigger WHERE pack_id = $1 AND ref <> ALL($2)", pack_id, &refs),
        }
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
    /// A new definition: an existing ref is left alone and the write returns None (the
    /// API's 409).
    Create,
    /// Insert, or update the definition of the same ref in place (pack reloads, PATCH);
    /// None when that ref belongs to another pack.
    Upsert,
}

/// Writes a trigger; returns its id (None: see [`Mode`]).
pub async fn write_trigger(
    conn: &mut PgConnection,
    tenant: Option<i64>,
    pack_id: i64,
    t: &TriggerDef,
    mode: Mode,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_file_scalar!(
        "../../sql/definitions/write_trigger.sql",
        tenant,
        pack_id,
        t.trigger_ref.as_str(),
        t.description,
        t.trigger_type as TriggerType,
        t.parameters,
        t.payload_schema,
        new_webhook_key(),
        t.webhook_secret,
        t.enabled,
        mode == Mode::Upsert,
    )
    .fetch_optional(conn)
    .await
}

/// Writes an action; returns its id (None: see [`Mode`]).
pub async fn write_action(
    conn: &mut PgConnection,
    tenant: Option<i64>,
    pack_id: i64,
    a: &ActionDef,
    mode: Mode,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_file_scalar!(
        "../../sql/definitions/write_action.sql",
        tenant,
        pack_id,
        a.action_ref.as_str(),
        a.description,
        a.runner_type as RunnerType,
        a.entry_point,
        a.command,
        a.code,
        a.parameters,
        a.params.schema,
        &a.params.secret,
        a.output_schema,
        a.timeout_seconds,
        a.retry.as_ref().map(|r| serde_json::to_value(r).expect("a retry policy serialises")),
        a.concurrency,
        &a.secrets,
        a.workflow,
        a.http,
        a.container,
        a.with_items,
        a.enabled,
        mode == Mode::Upsert,
        a.run_roles.as_ref().map(|roles| roles.iter().map(|r| r.as_str()).collect::<Vec<_>>()) as Option<Vec<&str>>,
        a.network,
    )
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
    sqlx::query_file_scalar!(
        "../../sql/definitions/write_sensor.sql",
        tenant,
        pack_id,
        s.sensor_ref.as_str(),
        s.description,
        s.runner_type as RunnerType,
        s.entry_point,
        s.poll_interval,
        trigger_id,
        s.config,
        s.enabled,
    )
    .fetch_optional(conn)
    .await
}

/// Writes a rule whose trigger and action are resolved; returns its id (None: see [`Mode`]).
pub async fn write_rule(
    conn: &mut PgConnection,
    tenant: Option<i64>,
    pack_id: i64,
    r: &RuleDef,
    trigger_id: i64,
    action_id: i64,
    mode: Mode,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_file_scalar!(
        "../../sql/definitions/write_rule.sql",
        tenant,
        pack_id,
        r.rule_ref.as_str(),
        r.description,
        trigger_id,
        action_id,
        r.criteria,
        r.action_params,
        r.enabled,
        r.notify_on_trigger,
        mode == Mode::Upsert,
    )
    .fetch_optional(conn)
    .await
}

/// What a rule points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Trigger,
    Action,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Trigger => "trigger",
            RefKind::Action => "action",
        }
    }
}

/// Id of a trigger or action by ref: the tenant's own first, then a system pack's.
pub async fn resolve(
    conn: &mut PgConnection,
    kind: RefKind,
    tenant: Option<i64>,
    r: &Ref,
) -> Result<Option<i64>, sqlx::Error> {
    match kind {
        RefKind::Trigger => {
            sqlx::query_scalar!(
                "SELECT id FROM attune.trigger WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL)
                  ORDER BY tenant_id NULLS LAST LIMIT 1",
                r.as_str(),
                tenant,
            )
            .fetch_optional(conn)
            .await
        }
        RefKind::Action => {
            sqlx::query_scalar!(
                "SELECT id FROM attune.action WHERE ref = $1 AND (tenant_id = $2 OR tenant_id IS NULL)
                  ORDER BY tenant_id NULLS LAST LIMIT 1",
                r.as_str(),
                tenant,
            )
            .fetch_optional(conn)
            .await
        }
    }
}
