//! Template checks at definition time. Rule criteria are minijinja expressions
//! (`trigger.data.severity == "high"`, with or without `{{ }}`); action parameters are
//! templates. Both are compiled when a rule is defined, so a syntax error is reported
//! then, naming the template, instead of failing every later event.

use minijinja::Environment;

/// The expression inside criteria: `{{ expr }}` and bare `expr` are both accepted.
pub fn criteria_expression(criteria: &str) -> &str {
    let t = criteria.trim();
    match t.strip_prefix("{{").and_then(|s| s.strip_suffix("}}")) {
        Some(inner) if !inner.contains("{{") => inner.trim(),
        _ => t,
    }
}

pub fn check_criteria(criteria: &str) -> Result<(), String> {
    let env = Environment::new();
    env.compile_expression(criteria_expression(criteria)).map(|_| ()).map_err(|e| format!("criteria {criteria:?}: {e}"))
}

/// Checks every string inside a JSON value (action parameters, workflow inputs).
/// `path` names the place in messages, e.g. `action_params`.
pub fn check_value(path: &str, value: &serde_json::Value) -> Result<(), String> {
    match value {
        serde_json::Value::String(s) if s.contains("{{") || s.contains("{%") => {
            let env = Environment::new();
            env.template_from_str(s).map(|_| ()).map_err(|e| format!("{path} template {s:?}: {e}"))
        }
        serde_json::Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| check_value(&format!("{path}[{i}]"), v))
        }
        serde_json::Value::Object(map) => map.iter().try_for_each(|(k, v)| check_value(&format!("{path}.{k}"), v)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_forms() {
        assert!(check_criteria("trigger.data.severity == 'high'").is_ok());
        assert!(check_criteria("{{ trigger.data.n > 3 }}").is_ok());
        let e = check_criteria("trigger.data.n >").unwrap_err();
        assert!(e.contains("criteria"), "{e}");
    }

    #[test]
    fn parameter_templates() {
        let ok = serde_json::json!({"m": "{{ trigger.data.x }}", "l": ["a", "{{ b }}"]});
        assert!(check_value("action_params", &ok).is_ok());
        let bad = serde_json::json!({"m": {"deep": "{{ x "}});
        let e = check_value("action_params", &bad).unwrap_err();
        assert!(e.contains("action_params.m.deep"), "{e}");
    }
}
