//! Template checks at definition time. Rule criteria are minijinja expressions
//! (`trigger.data.severity == "high"`, with or without `{{ }}`); action parameters are
//! templates. Both are compiled when a rule is defined, so a syntax error is reported
//! then, naming the template, instead of failing every later event.
//!
//! Rendering ([`eval_criteria`], [`render_value`]) happens in the rule engine. What a
//! template reads of the datastore (`datastore.KEY`, `secret.KEY`) is found here once per
//! definition ([`criteria_reads`], [`value_reads`]), so the engine loads exactly those items
//! for a batch, and nothing for templates that read none.

use std::collections::BTreeSet;

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

/// The two datastore namespaces of the template context.
pub const DATASTORE: &str = "datastore";
pub const SECRET: &str = "secret";

/// Names that read like a key (`datastore.get`) but are the mapping's own methods: a
/// template calling them may read any key.
const MAP_METHODS: &[&str] = &["get", "items", "keys", "values"];

/// The keys a template reads in one namespace (`datastore` or `secret`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReads {
    /// Keys named by attribute access (`datastore.threshold`).
    pub keys: BTreeSet<String>,
    /// The namespace is used in a way that names no key (`datastore[name]`, `datastore.get(k)`,
    /// `{% set d = datastore %}`): any key may be read.
    pub any: bool,
}

impl KeyReads {
    pub fn is_empty(&self) -> bool {
        !self.any && self.keys.is_empty()
    }

    /// Whether `key` may be read.
    pub fn covers(&self, key: &str) -> bool {
        self.any || self.keys.contains(key)
    }

    pub fn merge(&mut self, other: &KeyReads) {
        self.any |= other.any;
        self.keys.extend(other.keys.iter().cloned());
    }
}

/// What templates read of the datastore: `datastore.KEY` and `secret.KEY`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatastoreReads {
    pub datastore: KeyReads,
    pub secret: KeyReads,
}

impl DatastoreReads {
    pub fn is_empty(&self) -> bool {
        self.datastore.is_empty() && self.secret.is_empty()
    }

    pub fn merge(&mut self, other: &DatastoreReads) {
        self.datastore.merge(&other.datastore);
        self.secret.merge(&other.secret);
    }

    /// Adds the undeclared names of a template (`Template::undeclared_variables(true)`:
    /// `datastore.threshold`, or a bare `datastore` when no attribute chain follows it).
    fn add_names(&mut self, names: impl IntoIterator<Item = String>) {
        for name in names {
            let (head, rest) = match name.split_once('.') {
                Some((head, rest)) => (head, Some(rest)),
                None => (name.as_str(), None),
            };
            let reads = match head {
                DATASTORE => &mut self.datastore,
                SECRET => &mut self.secret,
                _ => continue,
            };
            // `datastore.a.b` reads key `a` (then its attribute `b`).
            match rest.map(|r| r.split('.').next().unwrap_or(r)) {
                Some(key) if !MAP_METHODS.contains(&key) => {
                    reads.keys.insert(key.to_string());
                }
                _ => reads.any = true,
            }
        }
    }
}

/// What rule criteria read of the datastore. Criteria that do not compile read nothing
/// (evaluating them fails with the template error anyway).
pub fn criteria_reads(criteria: &str) -> DatastoreReads {
    let env = Environment::new();
    let mut reads = DatastoreReads::default();
    if let Ok(expr) = env.compile_expression(criteria_expression(criteria)) {
        reads.add_names(expr.undeclared_variables(true));
    }
    reads
}

/// What the templates inside a JSON value (action parameters) read of the datastore.
pub fn value_reads(value: &Value) -> DatastoreReads {
    let mut reads = DatastoreReads::default();
    add_value_reads(&Environment::new(), value, &mut reads);
    reads
}

fn add_value_reads(env: &Environment<'_>, value: &Value, reads: &mut DatastoreReads) {
    match value {
        Value::String(s) if s.contains("{{") || s.contains("{%") => {
            if let Ok(template) = env.template_from_str(s) {
                reads.add_names(template.undeclared_variables(true));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| add_value_reads(env, v, reads)),
        Value::Object(map) => map.values().for_each(|v| add_value_reads(env, v, reads)),
        _ => {}
    }
}

/// The top-level parameters whose templates read `secret`: their rendered values are
/// secret parameters (sealed at rest, masked in the API, given to the action on stdin only).
pub fn secret_params(params: &Value) -> Vec<String> {
    let Value::Object(map) = params else { return Vec::new() };
    map.iter().filter(|(_, v)| !value_reads(v).secret.is_empty()).map(|(name, _)| name.clone()).collect()
}

/// `message` with every appearance of the secrets' values replaced by `********`: what a
/// template or validation error may quote of a rendered value is never a secret. Each string
/// and number inside a value counts (longest first, so no part of one survives another).
pub fn redact<'a>(message: &str, secrets: impl IntoIterator<Item = &'a Value>) -> String {
    let mut needles = Vec::new();
    for secret in secrets {
        collect_needles(secret, &mut needles);
    }
    if needles.is_empty() {
        return message.to_string();
    }
    needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    needles.dedup();
    let mut out = message.to_string();
    for needle in needles {
        out = out.replace(&needle, crate::execution::MASK);
    }
    out
}

fn collect_needles(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.is_empty() => {
            out.push(s.clone());
            // As JSON (escaped), the way messages often quote strings.
            let quoted = Value::String(s.clone()).to_string();
            out.push(quoted[1..quoted.len() - 1].to_string());
        }
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_needles(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_needles(v, out)),
        _ => {}
    }
    if matches!(value, Value::Array(_) | Value::Object(_)) {
        out.push(value.to_string());
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

    fn keys(names: &[&str]) -> KeyReads {
        KeyReads { keys: names.iter().map(|n| n.to_string()).collect(), any: false }
    }

    #[test]
    fn criteria_name_the_datastore_keys_they_read() {
        let reads = criteria_reads("{{ trigger.data.value > datastore.threshold }}");
        assert_eq!(reads.datastore, keys(&["threshold"]));
        assert!(reads.secret.is_empty());
        let reads = criteria_reads("secret.token == trigger.data.token and datastore.a.b > datastore.c");
        assert_eq!((reads.datastore, reads.secret), (keys(&["a", "c"]), keys(&["token"])));
        assert!(criteria_reads("trigger.data.n > 3").is_empty(), "no datastore, nothing to load");
        assert!(criteria_reads("trigger.data.n >").is_empty(), "a broken template reads nothing");
        let dynamic = criteria_reads("datastore[trigger.data.name] == 1");
        assert_eq!(dynamic.datastore, KeyReads { keys: BTreeSet::new(), any: true }, "a subscript names no key");
    }

    #[test]
    fn parameters_name_the_datastore_keys_they_read() {
        let params = serde_json::json!({
            "token": "{{ secret.api_token }}", "list": ["x {{ datastore.a.b }}", 3],
            "deep": {"h": "{% if datastore.flag %}{{ secret.other | upper }}{% endif %}"},
            "plain": "no template", "n": 1
        });
        let reads = value_reads(&params);
        assert_eq!(reads.datastore, keys(&["a", "flag"]));
        assert_eq!(reads.secret, keys(&["api_token", "other"]));
        let mut names = secret_params(&params);
        names.sort();
        assert_eq!(names, ["deep", "token"], "top-level parameters whose templates read a secret");
        assert!(secret_params(&serde_json::json!({"u": "{{ datastore.url }}"})).is_empty());
    }

    #[test]
    fn uses_that_name_no_key_read_any_key() {
        for template in [
            "{{ datastore['my-key'] }}",
            "{% set d = datastore %}{{ d.x }}",
            "{{ datastore.get('x') }}",
            "{% for k, v in datastore.items() %}{{ v }}{% endfor %}",
            "{{ datastore | length }}",
        ] {
            let reads = value_reads(&serde_json::json!({"p": template}));
            assert!(reads.datastore.any, "{template}: {reads:?}");
            assert!(reads.datastore.covers("anything"));
        }
        let reads = value_reads(&serde_json::json!({"p": "{{ secret[trigger.data.k] }}"}));
        assert!(reads.secret.any && reads.datastore.is_empty());
        let shadowed =
            "{% set datastore = trigger.data %}{{ datastore.x }}{% for secret in [1] %}{{ secret }}{% endfor %}";
        assert!(
            value_reads(&serde_json::json!({"p": shadowed})).is_empty(),
            "a local of the same name is not the datastore"
        );
        let mut all = criteria_reads("datastore.a");
        all.merge(&value_reads(&serde_json::json!({"p": "{{ datastore.b }}{{ secret['c'] }}"})));
        assert_eq!(all.datastore, keys(&["a", "b"]));
        assert!(all.secret.any);
    }

    #[test]
    fn a_missing_datastore_key_is_null() {
        let env = environment();
        let ctx = serde_json::json!({"trigger": {"data": {"value": 90}}, "datastore": {"threshold": 50}, "secret": {}});
        assert!(eval_criteria(&env, "{{ trigger.data.value > datastore.threshold }}", &ctx).unwrap());
        assert!(!eval_criteria(&env, "{{ datastore.nope }}", &ctx).unwrap());
        assert!(!eval_criteria(&env, "datastore.nope.deeper == 1", &ctx).unwrap());
        assert!(!eval_criteria(&env, "datastore.nope > 1", &ctx).unwrap());
        // minijinja orders undefined below every value, so `value > datastore.nope` alone is
        // true: criteria that must not fire without the key say so.
        let guarded = "datastore.nope is defined and trigger.data.value > datastore.nope";
        assert!(!eval_criteria(&env, guarded, &ctx).unwrap());
        let out = render_value(&env, "p", &serde_json::json!({"t": "{{ secret.nope }}"}), &ctx).unwrap();
        assert_eq!(out["t"], Value::Null);
    }

    #[test]
    fn redaction_hides_every_form_of_a_secret() {
        let secrets = [serde_json::json!("s3cr\"et"), serde_json::json!({"pin": 4321, "user": "bob-the-user"})];
        let message =
            r#"parameter token: "s3cr\"et" is not of type integer; s3cr"et; 4321; {"pin":4321,"user":"bob-the-user"}"#;
        let out = redact(message, &secrets);
        for leak in ["s3cr", "4321", "bob-the-user"] {
            assert!(!out.contains(leak), "{out}");
        }
        assert!(out.starts_with("parameter token: "), "{out}");
        assert_eq!(redact("nothing secret", &[]), "nothing secret");
        assert_eq!(redact("empty stays", &[serde_json::json!(""), serde_json::json!(true)]), "empty stays");
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
