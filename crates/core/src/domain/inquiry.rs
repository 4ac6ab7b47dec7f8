//! Inquiries: a question for a human inside an execution (`core.ask`, runner `inquiry`).
//!
//! The executor opens one from the execution's parameters ([`Ask::from_parameters`]): the
//! prompt, the JSON schema an answer must satisfy (the flat parameter form or a full JSON
//! Schema, normalised like action parameters), how long it waits, the answer used when
//! nobody answers in time, and who may answer. The API checks each answer with
//! [`Ask::check_response`] before it is recorded.

use serde_json::{json, Value};

use super::ParamSchema;

/// How long an inquiry waits when `ttl_seconds` is not given: one day.
pub const DEFAULT_TTL_SECONDS: i64 = 86_400;
/// The longest wait: a year.
pub const MAX_TTL_SECONDS: i64 = 365 * 86_400;

/// The parameters of an inquiry action, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub prompt: String,
    /// A normalised JSON Schema; `{}` accepts any answer.
    pub schema: Value,
    pub ttl_seconds: i64,
    /// Used on expiry; none means the execution fails when the inquiry expires.
    pub default_response: Option<Value>,
    /// Roles allowed to answer (none: any role with `inquiries:respond`).
    pub roles: Vec<String>,
    /// Logins allowed to answer (none: any).
    pub users: Vec<String>,
}

impl Ask {
    /// Reads the parameters; the error names the parameter and the problem.
    pub fn from_parameters(params: &Value) -> Result<Ask, String> {
        let prompt = match params.get("prompt") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err("parameter prompt: an inquiry needs a question to ask".into())
            }
            Some(other) => return Err(format!("parameter prompt: must be a string, got {other}")),
        };
        let schema = match params.get("schema") {
            None | Some(Value::Null) => json!({}),
            Some(Value::Object(m)) if m.is_empty() => json!({}),
            Some(raw) => {
                let full = raw.get("type").is_some_and(Value::is_string) && raw.get("properties").is_none();
                if full {
                    // A schema of a non-object answer (`{type: boolean}`): checked as it is.
                    jsonschema::validator_for(raw)
                        .map_err(|e| format!("parameter schema: not a valid JSON Schema: {e}"))?;
                    raw.clone()
                } else {
                    ParamSchema::parse(raw).map_err(|e| format!("parameter schema: {e}"))?.schema
                }
            }
        };
        let ttl_seconds = match params.get("ttl_seconds") {
            None | Some(Value::Null) => DEFAULT_TTL_SECONDS,
            Some(v) => match v.as_i64() {
                Some(n) if (1..=MAX_TTL_SECONDS).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "parameter ttl_seconds: must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}, got {v}"
                    ))
                }
            },
        };
        let default_response = match params.get("default_response") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.clone()),
        };
        let roles = names(params, "roles")?;
        for role in &roles {
            if super::rbac::Role::parse(role).is_none() {
                return Err(format!("parameter roles: {role:?} is not a role (admin, editor, executor or viewer)"));
            }
        }
        let users = names(params, "users")?;
        let ask = Ask { prompt, schema, ttl_seconds, default_response, roles, users };
        if let Some(default) = &ask.default_response {
            ask.check_response(default).map_err(|errors| {
                format!("parameter default_response does not satisfy the schema: {}", errors.join("; "))
            })?;
        }
        Ok(ask)
    }

    /// Checks an answer against the schema; each message names the field
    /// (`response.approved: "yes" is not of type "boolean"`).
    pub fn check_response(&self, response: &Value) -> Result<(), Vec<String>> {
        check_response(&self.schema, response)
    }
}

/// Checks `response` against a stored inquiry `schema` (see [`Ask::check_response`]).
pub fn check_response(schema: &Value, response: &Value) -> Result<(), Vec<String>> {
    let validator =
        jsonschema::validator_for(schema).map_err(|e| vec![format!("the inquiry's schema is invalid: {e}")])?;
    let mut errors = Vec::new();
    for error in validator.iter_errors(response) {
        let path = error.instance_path.to_string();
        let field =
            if path.is_empty() { "response".to_string() } else { format!("response{}", path.replace('/', ".")) };
        match &error.kind {
            jsonschema::error::ValidationErrorKind::Required { property } => {
                let name = property.as_str().map(str::to_string).unwrap_or_else(|| property.to_string());
                errors.push(format!("{field}.{name}: required field missing"));
            }
            _ => errors.push(format!("{field}: {error}")),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn names(params: &Value, field: &str) -> Result<Vec<String>, String> {
    match params.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => Ok(s.clone()),
                other => Err(format!("parameter {field}: every entry must be a non-empty string, got {other}")),
            })
            .collect(),
        Some(other) => Err(format!("parameter {field}: must be a list of names, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_flat_and_the_full_schema_forms() {
        let flat = Ask::from_parameters(
            &json!({"prompt": "Deploy?", "schema": {"approved": {"type": "boolean", "required": true}}}),
        )
        .unwrap();
        assert_eq!(flat.schema["required"], json!(["approved"]));
        assert_eq!(flat.ttl_seconds, DEFAULT_TTL_SECONDS);
        let full = Ask::from_parameters(
            &json!({"prompt": "Deploy?", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}),
        )
        .unwrap();
        assert_eq!(full.schema["properties"]["n"]["type"], "integer");
        let scalar = Ask::from_parameters(&json!({"prompt": "Deploy?", "schema": {"type": "boolean"}})).unwrap();
        assert!(scalar.check_response(&json!(true)).is_ok());
        assert!(scalar.check_response(&json!("yes")).is_err());
    }

    #[test]
    fn answers_are_checked_naming_the_field() {
        let ask = Ask::from_parameters(&json!({"prompt": "Which?", "schema": {
            "type": "object",
            "properties": {"approved": {"type": "boolean"}, "env": {"enum": ["dev", "prod"]}},
            "required": ["approved"]
        }}))
        .unwrap();
        assert!(ask.check_response(&json!({"approved": true, "env": "prod"})).is_ok());
        let errors = ask.check_response(&json!({"env": "qa"})).unwrap_err();
        assert!(errors.iter().any(|e| e.starts_with("response.approved: required")), "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("response.env:")), "{errors:?}");
        let errors = ask.check_response(&json!({"approved": "yes"})).unwrap_err();
        assert!(errors[0].starts_with("response.approved:"), "{errors:?}");
    }

    #[test]
    fn bad_parameters_are_named() {
        let err = |p: Value| Ask::from_parameters(&p).unwrap_err();
        assert!(err(json!({})).starts_with("parameter prompt"));
        assert!(err(json!({"prompt": "?", "ttl_seconds": 0})).starts_with("parameter ttl_seconds"));
        assert!(err(json!({"prompt": "?", "roles": ["boss"]})).starts_with("parameter roles"));
        assert!(err(json!({"prompt": "?", "users": "alice"})).starts_with("parameter users"));
        assert!(err(json!({"prompt": "?", "schema": {"type": "object", "properties": {"a": {"type": "bogus"}}}}))
            .starts_with("parameter schema"));
        let e = err(
            json!({"prompt": "?", "schema": {"ok": {"type": "boolean", "required": true}}, "default_response": {"ok": "x"}}),
        );
        assert!(e.starts_with("parameter default_response"), "{e}");
    }
}
