//! The audit log: who did what to which entity. Entries are written in the same
//! transaction as the change they record, many at once on hot paths.

use serde_json::Value;
use sqlx::PgConnection;

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
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub data: Value,
}

/// Appends `entries` in one statement.
pub async fn record(conn: &mut PgConnection, entries: &[Entry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&Entry) -> Option<String>| entries.iter().map(f).collect::<Vec<_>>();
    sqlx::query(include_str!("../../../sql/audit/insert.sql"))
        .bind(entries.iter().map(|e| e.tenant_id).collect::<Vec<_>>())
        .bind(col(&|e| Some(e.actor.kind.as_str().to_string())))
        .bind(col(&|e| e.actor.id.clone()))
        .bind(col(&|e| e.actor.login.clone()))
        .bind(col(&|e| Some(e.action.clone())))
        .bind(col(&|e| Some(e.entity_type.clone())))
        .bind(col(&|e| Some(e.entity_id.clone())))
        .bind(entries.iter().map(|e| e.data.clone()).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(())
}
