//! `key=value` arguments (action parameters, inquiry answers) into a JSON object.
//!
//! A value is typed by the schema it is for (an action's `parameters`, an inquiry's
//! `schema`; the flat form `{name: {type: ...}}` or a JSON Schema with `properties`): for a
//! `string` it is taken as written, for `integer`, `number`, `boolean`, `object`, `array` it
//! must be JSON (`count=3`, `force=true`, `tags='["a","b"]'`). Where the schema says
//! nothing, a value that parses as JSON is taken as such and anything else is a string.
//! `--params-json` gives the whole object at once; `key=value` pairs override its keys.

use serde_json::{Map, Value};

use crate::error::CliError;

/// Parses `pairs` against `schema` over the `base` object (the JSON given with `flag`).
pub fn parse(
    pairs: &[String],
    base: Option<&str>,
    flag: &str,
    schema: &Value,
    what: &str,
) -> Result<Map<String, Value>, CliError> {
    let mut object = match base {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(other) => {
                return Err(CliError::usage(format!(
                    "{flag} must be a JSON object like '{{\"name\": \"value\"}}', not {other}"
                )))
            }
            Err(e) => return Err(CliError::usage(format!("{flag} is not JSON: {e}"))),
        },
    };
    for pair in pairs {
        let Some((key, raw)) = pair.split_once('=') else {
            return Err(CliError::usage(format!(
                "{pair:?} is not key=value: write {what}s as name=value (e.g. message=hello)"
            )));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(CliError::usage(format!("{pair:?}: the name before = is empty")));
        }
        let value = typed(key, raw, types_of(schema, key).as_deref(), what)?;
        object.insert(key.to_string(), value);
    }
    Ok(object)
}

/// The JSON types the schema allows for `key` (None: not said).
fn types_of(schema: &Value, key: &str) -> Option<Vec<String>> {
    let property = match schema.get("properties") {
        Some(props) if props.is_object() => props.get(key)?,
        _ => schema.get(key)?,
    };
    match property.get("type")? {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect()),
        _ => None,
    }
}

fn typed(key: &str, raw: &str, types: Option<&[String]>, what: &str) -> Result<Value, CliError> {
    let parsed = serde_json::from_str::<Value>(raw).ok();
    let Some(types) = types.filter(|t| !t.is_empty()) else {
        return Ok(parsed.unwrap_or_else(|| Value::String(raw.to_string())));
    };
    if types.iter().any(|t| t == "string") {
        // A string parameter that may also be another type: JSON when it is that type.
        if let Some(v) = parsed.filter(|v| !v.is_string() && types.iter().any(|t| matches_type(v, t))) {
            return Ok(v);
        }
        return Ok(Value::String(raw.to_string()));
    }
    match parsed {
        Some(v) if types.iter().any(|t| matches_type(&v, t)) => Ok(v),
        _ => Err(CliError::usage(format!(
            "{what} {key}: {raw:?} is not of type {} ({})",
            types.join(" or "),
            example(&types[0], key)
        ))),
    }
}

fn matches_type(v: &Value, t: &str) -> bool {
    match t {
        "integer" => v.as_i64().is_some() || v.as_u64().is_some(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        "string" => v.is_string(),
        _ => true,
    }
}

fn example(t: &str, key: &str) -> String {
    match t {
        "integer" => format!("write e.g. {key}=3"),
        "number" => format!("write e.g. {key}=2.5"),
        "boolean" => format!("write {key}=true or {key}=false"),
        "object" => format!("write JSON, e.g. {key}='{{\"a\": 1}}'"),
        "array" => format!("write JSON, e.g. {key}='[\"a\", \"b\"]'"),
        _ => format!("write {key}=VALUE"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(pairs: &[&str], schema: Value) -> Result<Value, CliError> {
        let pairs: Vec<String> = pairs.iter().map(|s| s.to_string()).collect();
        parse(&pairs, None, "--params-json", &schema, "parameter").map(Value::Object)
    }

    #[test]
    fn typed_by_the_flat_form() {
        let schema = json!({"message": {"type": "string"}, "count": {"type": "integer"}, "force": {"type": "boolean"}});
        assert_eq!(
            p(&["message=123", "count=3", "force=true"], schema.clone()).unwrap(),
            json!({"message": "123", "count": 3, "force": true})
        );
        let e = p(&["count=three"], schema).unwrap_err().to_string();
        assert!(e.contains("parameter count: \"three\" is not of type integer"), "{e}");
    }

    #[test]
    fn typed_by_a_json_schema_and_guessed_without_one() {
        let schema = json!({"type": "object", "properties": {"approved": {"type": "boolean"}}});
        assert_eq!(p(&["approved=true"], schema).unwrap(), json!({"approved": true}));
        assert_eq!(
            p(&["n=2", "s=hello world", "o={\"a\":1}"], json!({})).unwrap(),
            json!({"n": 2, "s": "hello world", "o": {"a": 1}})
        );
    }

    #[test]
    fn pairs_override_the_json_object_and_bad_input_is_named() {
        let pairs = vec!["a=2".to_string()];
        let merged = parse(&pairs, Some(r#"{"a": 1, "b": "x"}"#), "--params-json", &json!({}), "parameter").unwrap();
        assert_eq!(Value::Object(merged), json!({"a": 2, "b": "x"}));
        assert!(p(&["novalue"], json!({})).unwrap_err().to_string().contains("is not key=value"));
        assert!(parse(&[], Some("[1]"), "--params-json", &json!({}), "parameter")
            .unwrap_err()
            .to_string()
            .contains("JSON object"));
    }
}
