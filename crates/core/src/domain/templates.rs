//! Template checks at definition time. Rule criteria are minijinja expressions
//! (`trigger.data.severity == "high"`, with or without `{{ }}`); action parameters are
//! templates. Both are compiled when a rule is defined, so a syntax error is reported
//! then, naming the template, instead of failing every later event.

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

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

/// The environment every template is rendered in: undefined values chain (so a criterion
/// on a missing nested field is simply false) and render as nothing.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // Tenants write these templates and the engine renders them for everyone: bound the
    // work one evaluation may do (a template loop over range(10**6) runs out of fuel).
    env.set_fuel(Some(FUEL));
    env
}

/// Instructions one template evaluation may execute.
pub const FUEL: u64 = 100_000;
/// Largest rendered parameter document, in bytes of JSON.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// Checks a rendered document can be stored (no NUL characters, within the size bound).
pub fn check_rendered(path: &str, value: &Value) -> Result<(), String> {
    let text = value.to_string();
    if text.len() > MAX_RENDERED_BYTES {
        return Err(format!("{path} renders to {} bytes, more than the {MAX_RENDERED_BYTES} allowed", text.len()));
    }
    if text.contains("\\u0000") {
        return Err(format!("{path} renders a NUL character, which cannot be stored"));
    }
    Ok(())
}

/// Evaluates rule criteria against `context`; true when the value is truthy.
pub fn eval_criteria(env: &Environment<'_>, criteria: &str, context: &Value) -> Result<bool, String> {
    let expr =
        env.compile_expression(criteria_expression(criteria)).map_err(|e| format!("criteria {criteria:?}: {e}"))?;
    let value = expr.eval(context).map_err(|e| format!("criteria {criteria:?}: {e}"))?;
    Ok(value.is_true())
}

/// If `s` is exactly one `{{ expr }}`, the expression.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner.trim())
}

/// Renders every string inside `value` as a template over `context`. A string that is
/// exactly one `{{ expr }}` keeps the expression's JSON type (a number stays a number, an
/// undefined value becomes null); any other string renders to a string. `path` names the
/// place in error messages.
pub fn render_value(env: &Environment<'_>, path: &str, value: &Value, context: &Value) -> Result<Value, String> {
    match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            if let Some(expr) = single_expression(s) {
                let compiled = env.compile_expression(expr).map_err(|e| format!("{path} template {s:?}: {e}"))?;
                let out = compiled.eval(context).map_err(|e| format!("{path} template {s:?}: {e}"))?;
                if out.is_undefined() || out.is_none() {
                    return Ok(Value::Null);
                }
                serde_json::to_value(&out).map_err(|e| format!("{path} template {s:?}: {e}"))
            } else {
                env.render_str(s, context).map(Value::String).map_err(|e| format!("{path} template {s:?}: {e}"))
            }
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| render_value(env, &format!("{path}[{i}]"), v, context))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| render_value(env, &format!("{path}.{k}"), v, context).map(|v| (k.clone(), v)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
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
    fn criteria_and_rendering() {
        let env = environment();
        let ctx =
            serde_json::json!({"trigger": {"data": {"status": "critical", "n": 5, "user": {"id": 7}, "tags": ["a"]}}});
        assert!(eval_criteria(&env, "{{ trigger.data.status == \"critical\" }}", &ctx).unwrap());
        assert!(!eval_criteria(&env, "trigger.data.n > 10", &ctx).unwrap());
        assert!(eval_criteria(&env, "trigger.data.status in ['critical', 'high']", &ctx).unwrap());
        assert!(!eval_criteria(&env, "trigger.data.missing.deeper == 1", &ctx).unwrap(), "missing fields are false");
        let params = serde_json::json!({
            "id": "{{ trigger.data.user.id }}", "all": "{{ trigger.data }}", "text": "n={{ trigger.data.n }}",
            "gone": "{{ trigger.data.nothing }}", "list": ["{{ trigger.data.tags }}"], "plain": 3
        });
        let out = render_value(&env, "action_params", &params, &ctx).unwrap();
        assert_eq!(out["id"], 7, "one expression keeps its JSON type");
        assert_eq!(out["all"]["user"]["id"], 7);
        assert_eq!(out["text"], "n=5");
        assert_eq!(out["gone"], Value::Null);
        assert_eq!(out["list"][0], serde_json::json!(["a"]));
        assert_eq!(out["plain"], 3);
        let err = render_value(
            &env,
            "action_params",
            &serde_json::json!({"x": "{{ trigger.data.n | no_such_filter }}"}),
            &ctx,
        )
        .unwrap_err();
        assert!(err.contains("action_params.x"), "{err}");
        let greedy = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let err = render_value(&env, "action_params", &serde_json::json!({"x": greedy}), &ctx).unwrap_err();
        assert!(err.contains("fuel"), "a runaway template is stopped: {err}");
        let nul = render_value(&env, "p", &serde_json::json!({"x": "{{ '\\x00' }}"}), &ctx).unwrap();
        assert!(check_rendered("action_params", &nul).unwrap_err().contains("NUL"));
        assert!(check_rendered("action_params", &serde_json::json!({"x": "fine"})).is_ok());
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
