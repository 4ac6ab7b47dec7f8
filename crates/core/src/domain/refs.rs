//! References: `pack` and `pack.name`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A pack's ref: lowercase letters, digits, `_` and `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackRef(String);

/// A definition's ref, `pack.name`. Names take letters, digits, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ref {
    full: String,
    dot: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RefError(String);

impl PackRef {
    pub fn parse(s: &str) -> Result<PackRef, RefError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(PackRef(s.to_string()))
        } else {
            Err(RefError(format!(
                "invalid pack ref {s:?}: expected 1-64 lowercase letters, digits, '_' or '-', starting with a letter or digit"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Ref {
    pub fn parse(s: &str) -> Result<Ref, RefError> {
        let Some((pack, name)) = s.split_once('.') else {
            return Err(RefError(format!("invalid ref {s:?}: expected pack.name")));
        };
        PackRef::parse(pack).map_err(|e| RefError(format!("invalid ref {s:?}: {e}")))?;
        if !valid_name(name) {
            return Err(RefError(format!(
                "invalid ref {s:?}: the name {name:?} must be 1-128 letters, digits, '_' or '-', starting with a letter, digit or '_'"
            )));
        }
        Ok(Ref { full: s.to_string(), dot: pack.len() })
    }

    /// `pack` + `name`, checking the name.
    pub fn new(pack: &PackRef, name: &str) -> Result<Ref, RefError> {
        Ref::parse(&format!("{}.{name}", pack.as_str()))
    }

    pub fn pack(&self) -> &str {
        &self.full[..self.dot]
    }

    pub fn name(&self) -> &str {
        &self.full[self.dot + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for PackRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl FromStr for Ref {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ref::parse(s)
    }
}

impl Serialize for Ref {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.full)
    }
}

impl<'de> Deserialize<'de> for Ref {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ref::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for PackRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PackRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PackRef::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_parse_and_split() {
        let r = Ref::parse("core.echo").unwrap();
        assert_eq!((r.pack(), r.name()), ("core", "echo"));
        assert!(Ref::parse("my-pack.on_signup-2").is_ok());
        for bad in ["core", ".echo", "core.", "Core.echo", "core.ec ho", "core.echo;drop", "a.b.c", "core.'x'"] {
            assert!(Ref::parse(bad).is_err(), "{bad} should be rejected");
        }
        assert!(PackRef::parse("x".repeat(65).as_str()).is_err());
    }
}
