//! Roles and permissions (API.md "Auth").
//!
//! | role     | read | run, cancel, respond | write definitions and datastore | users, audit |
//! |----------|------|----------------------|---------------------------------|--------------|
//! | admin    | yes  | yes                  | yes                             | yes          |
//! | editor   | yes  | yes                  | yes                             |              |
//! | executor | yes  | yes                  |                                 |              |
//! | viewer   | yes  |                      |                                 |              |

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stored as `text` (see [`super::status`] for why not a PostgreSQL enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum Role {
    Admin,
    Editor,
    Executor,
    Viewer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Run,
    Cancel,
    Respond,
    WriteDefinitions,
    WriteDatastore,
    ManageUsers,
    ReadAudit,
}

impl Permission {
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Run => "executions:run",
            Permission::Cancel => "executions:cancel",
            Permission::Respond => "inquiries:respond",
            Permission::WriteDefinitions => "definitions:write",
            Permission::WriteDatastore => "datastore:write",
            Permission::ManageUsers => "users:manage",
            Permission::ReadAudit => "audit:read",
        }
    }
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Editor, Role::Executor, Role::Viewer];

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "editor" => Some(Role::Editor),
            "executor" => Some(Role::Executor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Executor => "executor",
            Role::Viewer => "viewer",
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Editor => !matches!(permission, ManageUsers | ReadAudit),
            Role::Executor => matches!(permission, Read | Run | Cancel | Respond),
            Role::Viewer => permission == Read,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
