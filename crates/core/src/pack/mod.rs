//! Packs: the unit in which actions, triggers, sensors, rules and workflows ship.
//!
//! - [`spec`]: the definition bodies (shared by pack YAML files and the REST API) and
//!   their validation into checked definitions.
//! - [`loader`]: reads a pack directory into a [`loader::PackDefinition`], rejecting the
//!   whole pack if any file is bad, with errors that name the file, the field and the problem.
//! - [`install`]: writes a loaded pack into the database in one transaction (insert or reload).
//! - [`archive`]: unpacks an uploaded `.tar.gz` safely (no entry reaches outside it; size
//!   and entry limits); [`git`]: fetches one commit of a repository; [`store`]: the
//!   versioned directories uploaded and git-installed packs run from.

pub mod archive;
pub mod git;
pub mod install;
pub mod loader;
pub mod spec;
pub mod store;

use std::fmt;
use std::path::PathBuf;

/// One problem with one file of a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    /// The field at fault, when the problem is one field's.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {}: {}", self.file.display(), field, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The pack was rejected; nothing of it was loaded. Every problem found is listed.
    #[error("pack rejected, nothing was loaded:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FileError>),
    #[error("database error while loading the pack: {0}")]
    Db(#[from] sqlx::Error),
}

impl PackError {
    pub fn invalid(file: impl Into<PathBuf>, field: Option<&str>, message: impl Into<String>) -> PackError {
        PackError::Invalid(vec![FileError {
            file: file.into(),
            field: field.map(str::to_string),
            message: message.into(),
        }])
    }

    /// The problems, when the pack was rejected for its content.
    pub fn problems(&self) -> &[FileError] {
        match self {
            PackError::Invalid(errors) => errors,
            PackError::Db(_) => &[],
        }
    }
}
