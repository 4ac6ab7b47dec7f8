//! Which OS account sandboxed programs run as: `sandbox.run_as`, else the dedicated
//! [`ACTION_USER`] when it exists, else nobody ([`NOBODY`]) — never root, never the
//! service's own user.

use super::sandbox::{ACTION_USER, NOBODY};

/// An OS account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Who a sandboxed program is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The service is root: the program's process becomes this account before the sandbox
    /// is built.
    Switch(Account),
    /// The service is not root and cannot switch: the program keeps the service's uid
    /// outside, mapped to [`NOBODY`] inside the sandbox.
    Mapped,
}

/// The identity of sandboxed programs under `run_as` (`sandbox.run_as`: a user name or
/// uid). Refused: root, the service's own user, and `run_as` in a service that is not
/// root (it could not switch).
pub fn identity(run_as: Option<&str>) -> Result<Identity, String> {
    let service = nix::unistd::geteuid();
    if !service.is_root() {
        return match run_as {
            None => Ok(Identity::Mapped),
            Some(user) => Err(format!(
                "sandbox.run_as ({user}) needs the service to run as root, to switch users; this service runs as \
                 uid {service}: unset sandbox.run_as (the sandbox then maps this uid to {NOBODY} inside)"
            )),
        };
    }
    let account = match run_as {
        Some(user) => lookup(user)?.ok_or_else(|| format!("sandbox.run_as: there is no user {user:?}"))?,
        None => lookup(ACTION_USER).ok().flatten().unwrap_or(Account { uid: NOBODY, gid: NOBODY }),
    };
    if account.uid == 0 || account.gid == 0 {
        return Err(format!("sandbox.run_as: actions never run as root (uid {} gid {})", account.uid, account.gid));
    }
    Ok(Identity::Switch(account))
}

/// A user by name or uid; a uid without a passwd entry gets the same number as gid.
pub(super) fn lookup(user: &str) -> Result<Option<Account>, String> {
    use nix::unistd::{Uid, User};
    let found = match user.parse::<u32>() {
        Ok(uid) => {
            let entry = User::from_uid(Uid::from_raw(uid)).map_err(|e| format!("cannot look up uid {uid}: {e}"))?;
            Some(Account { uid, gid: entry.map_or(uid, |u| u.gid.as_raw()) })
        }
        Err(_) => User::from_name(user)
            .map_err(|e| format!("cannot look up user {user:?}: {e}"))?
            .map(|u| Account { uid: u.uid.as_raw(), gid: u.gid.as_raw() }),
    };
    Ok(found)
}
