//! Action parameter schemas.
//!
//! Pack authors write the flat form of StackStorm and the test plan:
//! `{url: {type: string, required: true}, token: {type: string, secret: true}}`.
//! A full JSON Schema object (`{type: object, properties: {...}, required: [...]}`) is
//! accepted too. Both become one normalised JSON Schema, checked against the JSON Schema
//! meta-schema when the action is defined, so a broken schema never reaches the scheduler.

use serde_json::{json, Map, Value};

const JSON_TYPES: &[&str] = &["string", "integer", "number", "boolean", "array", "object", "null"];

/// A parsed, valid parameter schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSchema {
    /// Normalised JSON Schema (`type: object`).
    pub schema: Value,
    /// Names of parameters marked `secret: true`.
    pub secret: Vec<String>,
}

impl Default for ParamSchema {
    fn default() -> Self {
        ParamSchema { schema: json!({"type": "object", "properties": {}}), secret: Vec::new() }
    }
}

impl ParamSchema {
    /// Parses either form. Errors name the parameter and the problem.
    pub fn parse(raw: &Value) -> Result<ParamSchema, String> {
        let Value::Object(map) = raw else {
            if raw.is_null() {
                return Ok(ParamSchema::default());
            }
            return Err(format!("parameters must be a mapping of parameter names, got {}", kind(raw)));
        };
        let is_full_schema = map.get("type").and_then(Value::as_str) == Some("object")
            && map.get("properties").is_some_and(Value::is_object);
        let (schema, secret) = if is_full_schema { Self::from_full(map)? } else { Self::from_flat(map)? };
        if let Err(e) = jsonschema::validator_for(&schema) {
            return Err(format!("parameters are not a valid JSON Schema: {e} (at {})", e.schema_path));
        }
        Ok(ParamSchema { schema, secret })
    }

    fn from_full(map: &Map<String, Value>) -> Result<(Value, Vec<String>), String> {
        let props = map["properties"].as_object().expect("checked by the caller");
        let mut secret = Vec::new();
        for (name, prop) in props {
            check_property(name, prop)?;
            if prop.get("secret").and_then(Value::as_bool) == Some(true) {
                secret.push(name.clone());
            }
        }
        Ok((Value::Object(map.clone()), secret))
    }

    fn from_flat(map: &Map<String, Value>) -> Result<(Value, Vec<String>), String> {
        let mut properties = Map::new();
        let mut required = Vec::new();
        let mut secret = Vec::new();
        for (name, prop) in map {
            check_property(name, prop)?;
            let mut prop = prop.as_object().cloned().unwrap_or_default();
            match prop.remove("required") {
                None | Some(Value::Bool(false)) => {}
                Some(Value::Bool(true)) => required.push(Value::String(name.clone())),
                Some(other) => {
                    return Err(format!("parameter {name:?}: required must be true or false, got {}", kind(&other)));
                }
            }
            if prop.get("secret").and_then(Value::as_bool) == Some(true) {
                secret.push(name.clone());
            }
            properties.insert(name.clone(), Value::Object(prop));
        }
        let mut schema = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            schema["required"] = Value::Array(required);
        }
        Ok((schema, secret))
    }

    /// Fills in declared defaults for parameters that were not given.
    pub fn apply_defaults(&self, params: &mut Map<String, Value>) {
        if let Some(props) = self.schema.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                if let Some(default) = prop.get("default") {
                    params.entry(name.clone()).or_insert_with(|| default.clone());
                }
            }
        }
    }

    /// Validates (defaults already applied). Each message names the parameter:
    /// "missing required parameter: url", "parameter count: \"x\" is not of type integer".
    pub fn validate(&self, params: &Value) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if let (Some(required), Some(given)) =
            (self.schema.get("required").and_then(Value::as_array), params.as_object())
        {
            for name in required.iter().filter_map(Value::as_str) {
                if !given.contains_key(name) {
                    errors.push(format!("missing required parameter: {name}"));
                }
            }
        }
        let validator = match jsonschema::validator_for(&self.schema) {
            Ok(v) => v,
            Err(e) => return Err(vec![format!("invalid parameter schema: {e}")]),
        };
        for error in validator.iter_errors(params) {
            let path = error.instance_path.to_string();
            if path.is_empty() {
                // Missing required properties are already reported by name above.
                if matches!(error.kind, jsonschema::error::ValidationErrorKind::Required { .. }) {
                    continue;
                }
                errors.push(format!("parameters: {error}"));
            } else {
                let name = path.trim_start_matches('/').replace('/', ".");
                errors.push(format!("parameter {name}: {error}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// A copy of `params` with secret parameters replaced by `"********"`.
    pub fn mask(&self, params: &Value) -> Value {
        let mut masked = params.clone();
        if let Some(map) = masked.as_object_mut() {
            for name in &self.secret {
                if let Some(v) = map.get_mut(name) {
                    *v = Value::String("********".into());
                }
            }
        }
        masked
    }
}

fn check_property(name: &str, prop: &Value) -> Result<(), String> {
    let Some(obj) = prop.as_object() else {
        return Err(format!("parameter {name:?}: expected a mapping like {{type: string}}, got {}", kind(prop)));
    };
    match obj.get("type") {
        None => {}
        Some(Value::String(t)) if JSON_TYPES.contains(&t.as_str()) => {}
        Some(Value::Array(ts)) if ts.iter().all(|t| t.as_str().is_some_and(|t| JSON_TYPES.contains(&t))) => {}
        Some(other) => {
            return Err(format!("parameter {name:?}: unknown type {other}: expected one of {}", JSON_TYPES.join(", ")));
        }
    }
    if let Some(e) = obj.get("enum") {
        if !e.is_array() {
            return Err(format!("parameter {name:?}: enum must be a list, got {}", kind(e)));
        }
    }
    if let Some(s) = obj.get("secret") {
        if !s.is_boolean() {
            return Err(format!("parameter {name:?}: secret must be true or false, got {}", kind(s)));
        }
    }
    Ok(())
}

/// How a JSON value is named in messages: `a string`, `a mapping`, ...
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_form_becomes_json_schema() {
        let p = ParamSchema::parse(&json!({
            "url": {"type": "string", "required": true, "description": "where"},
            "method": {"type": "string", "enum": ["GET", "POST"], "default": "GET"},
            "token": {"type": "string", "secret": true}
        }))
        .unwrap();
        assert_eq!(p.schema["required"], json!(["url"]));
        assert_eq!(p.schema["properties"]["method"]["default"], "GET");
        assert_eq!(p.secret, vec!["token".to_string()]);

        let mut given = Map::new();
        p.apply_defaults(&mut given);
        assert_eq!(given["method"], "GET");
        let errs = p.validate(&Value::Object(given.clone())).unwrap_err();
        assert_eq!(errs, vec!["missing required parameter: url".to_string()]);

        given.insert("url".into(), json!("http://x"));
        given.insert("token".into(), json!("s"));
        assert!(p.validate(&Value::Object(given.clone())).is_ok());
        assert_eq!(p.mask(&Value::Object(given))["token"], "********");

        let errs = p.validate(&json!({"url": 5, "method": "PUT"})).unwrap_err();
        assert!(errs.iter().any(|e| e.starts_with("parameter url:")), "{errs:?}");
        assert!(errs.iter().any(|e| e.starts_with("parameter method:")), "{errs:?}");
    }

    #[test]
    fn full_schema_is_accepted() {
        let p = ParamSchema::parse(&json!({
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1}},
            "required": ["n"]
        }))
        .unwrap();
        assert!(p.validate(&json!({"n": 2})).is_ok());
        assert!(p.validate(&json!({"n": 0})).is_err());
    }

    #[test]
    fn broken_schemas_name_the_parameter() {
        let e = ParamSchema::parse(&json!({"url": {"type": "strng"}})).unwrap_err();
        assert!(e.contains("\"url\"") && e.contains("strng"), "{e}");
        let e = ParamSchema::parse(&json!({"url": "string"})).unwrap_err();
        assert!(e.contains("\"url\""), "{e}");
        let e = ParamSchema::parse(&json!({"m": {"enum": "GET"}})).unwrap_err();
        assert!(e.contains("enum"), "{e}");
        let e = ParamSchema::parse(&json!({"m": {"required": "yes"}})).unwrap_err();
        assert!(e.contains("required"), "{e}");
        let e = ParamSchema::parse(&json!({"m": {"type": "integer", "minimum": "one"}})).unwrap_err();
        assert!(e.contains("not a valid JSON Schema"), "{e}");
        assert!(ParamSchema::parse(&json!([1])).is_err());
    }
}
