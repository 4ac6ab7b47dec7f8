//! The audit log's one writer: who did what to which entity. Entries are written in the
//! same transaction as the change they record, many at once on hot paths.
//!
//! The batch statements of the pipeline (admission, claim, completion, reaper) append
//! their entries inside their own single statement (`sql/executor/*.sql`,
//! `sql/worker/*.sql`) so a batch stays one round trip; everything else goes through
//! [`record`] or [`record_one`].

use serde_json::Value;
use sqlx::PgConnection;

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorType {
    User,
    Service,
    Worker,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorType::User => "user",
            ActorType::Service => "service",
            ActorType::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorType,
    pub id: Option<String>,
    pub login: Option<String>,
}

impl Actor {
    pub fn user(id: i64, login: &str) -> Actor {
        Actor { kind: ActorType::User, id: Some(id.to_string()), login: Some(login.to_string()) }
    }
    pub fn service(name: &str) -> Actor {
        Actor { kind: ActorType::Service, id: Some(name.to_string()), login: None }
    }
    pub fn worker(name: &str) -> Actor {
        Actor { kind: ActorType::Worker, id: Some(name.to_string()), login: None }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub tenant_id: Option<i64>,
    pub actor: Actor,
    /// `<entity>.<verb>`, e.g. `action.created`.
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub data: Value,
}

impl Entry {
    pub fn new(
        tenant_id: Option<i64>,
        actor: &Actor,
        action: impl Into<String>,
        entity_type: &str,
        entity_id: impl ToString,
        data: Value,
    ) -> Entry {
        Entry {
            tenant_id,
            actor: actor.clone(),
            action: action.into(),
            entity_type: entity_type.to_string(),
            entity_id: entity_id.to_string(),
            data,
        }
    }
}

/// The entries as the columns of `sql/audit/insert.sql`.
#[derive(Default)]
struct Columns {
    tenant_ids: Vec<Option<i64>>,
    actor_types: Vec<&'static str>,
    actor_ids: Vec<Option<String>>,
    actor_logins: Vec<Option<String>>,
    actions: Vec<String>,
    entity_types: Vec<String>,
    entity_ids: Vec<String>,
    data: Vec<Value>,
}

impl Columns {
    fn of(entries: &[Entry]) -> Columns {
        let mut c = Columns::default();
        for e in entries {
            c.tenant_ids.push(e.tenant_id);
            c.actor_types.push(e.actor.kind.as_str());
            c.actor_ids.push(e.actor.id.clone());
            c.actor_logins.push(e.actor.login.clone());
            c.actions.push(e.action.clone());
            c.entity_types.push(e.entity_type.clone());
            c.entity_ids.push(e.entity_id.clone());
            c.data.push(e.data.clone());
        }
        c
    }
}

/// Appends `entries` in one statement.
pub async fn record(conn: &mut PgConnection, entries: &[Entry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let c = Columns::of(entries);
    sqlx::query_file!(
        "../../sql/audit/insert.sql",
        &c.tenant_ids as &[Option<i64>],
        &c.actor_types as &[&str],
        &c.actor_ids as &[Option<String>],
        &c.actor_logins as &[Option<String>],
        &c.actions,
        &c.entity_types,
        &c.entity_ids,
        &c.data,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends one entry.
pub async fn record_one(
    conn: &mut PgConnection,
    tenant_id: Option<i64>,
    actor: &Actor,
    action: &str,
    entity_type: &str,
    entity_id: impl ToString,
    data: Value,
) -> Result<(), sqlx::Error> {
    record(conn, &[Entry::new(tenant_id, actor, action, entity_type, entity_id, data)]).await
}
