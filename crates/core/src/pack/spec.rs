//! Definition bodies, as written in pack YAML files and sent to the REST API, and their
//! validation into checked definitions. Validation happens here once; the engine only
//! ever sees checked values.

use serde::Deserialize;
use serde_json::Value;

use crate::domain::rbac::Role;
use crate::domain::templates::{check_criteria, check_value};
use crate::domain::{PackRef, ParamSchema, Ref, RunnerType, TriggerType};

/// A field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

fn err<T>(field: &str, message: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError { field: field.to_string(), message: message.into() })
}

/// `pack.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct PackSpec {
    #[serde(rename = "ref", alias = "name")]
    pub pack_ref: String,
    pub label: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    /// Informational: whether a pack is a system pack is decided by who loads it.
    #[serde(default)]
    pub system: bool,
    pub author: Option<String>,
    pub email: Option<String>,
    pub keywords: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackMeta {
    pub pack_ref: PackRef,
    pub label: Option<String>,
    pub version: String,
    pub description: Option<String>,
}

impl PackSpec {
    pub fn check(self) -> Result<PackMeta, SpecError> {
        let pack_ref = PackRef::parse(&self.pack_ref).or_else(|e| err("ref", e.to_string()))?;
        let version = self.version.unwrap_or_else(|| "0.0.0".into());
        if version.trim().is_empty() || version.len() > 64 {
            return err("version", "must be a non-empty version string such as 1.0.0");
        }
        Ok(PackMeta { pack_ref, label: self.label, version, description: self.description })
    }
}

/// Resolves a definition's name: `ref` (`pack.name`, which must be this pack), else `name`,
/// else the file stem.
/// A definition's ref in `pack`: its `ref`, else `pack.<name>`, else `pack.<fallback>` (the
/// file's name). A `pack` field, which every definition file may carry, must name `pack`.
fn resolve_ref(
    pack: &PackRef,
    given_pack: Option<&str>,
    given_ref: Option<&str>,
    name: Option<&str>,
    fallback: Option<&str>,
) -> Result<Ref, SpecError> {
    if let Some(p) = given_pack {
        if p != pack.as_str() {
            return err("pack", format!("{p:?} does not match the pack {:?}", pack.as_str()));
        }
    }
    if let Some(r) = given_ref {
        let parsed = Ref::parse(r).or_else(|e| err("ref", e.to_string()))?;
        if parsed.pack() != pack.as_str() {
            return err("ref", format!("{r:?} names pack {:?}, but this is pack {:?}", parsed.pack(), pack.as_str()));
        }
        return Ok(parsed);
    }
    let Some(name) = name.or(fallback) else {
        return err("ref", "missing: give ref (pack.name) or name");
    };
    Ref::new(pack, name).or_else(|e| err("name", e.to_string()))
}

fn check_relative_path(field: &str, path: &str) -> Result<(), SpecError> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|p| p == "..") {
        return err(field, format!("{path:?} must be a relative path inside the pack, without '..'"));
    }
    Ok(())
}

/// The retry block of an action or workflow task.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default = "RetryPolicy::default_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub delay_seconds: f64,
    #[serde(default = "RetryPolicy::default_multiplier")]
    pub backoff_multiplier: f64,
    pub max_delay_seconds: Option<f64>,
}

impl RetryPolicy {
    fn default_attempts() -> u32 {
        3
    }
    fn default_multiplier() -> f64 {
        1.0
    }

    pub fn parse(value: &Value) -> Result<RetryPolicy, SpecError> {
        let policy: RetryPolicy = serde_json::from_value(value.clone()).or_else(|e| err("retry", e.to_string()))?;
        if policy.max_attempts == 0 {
            return err("retry.max_attempts", "must be at least 1");
        }
        if !(policy.delay_seconds >= 0.0 && policy.backoff_multiplier >= 1.0) {
            return err("retry", "delay_seconds must be >= 0 and backoff_multiplier >= 1");
        }
        Ok(policy)
    }
}

/// An action body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct ActionSpec {
    #[serde(rename = "ref")]
    pub action_ref: Option<String>,
    pub name: Option<String>,
    pub pack: Option<String>,
    pub description: Option<String>,
    pub runner_type: Option<String>,
    pub entry_point: Option<String>,
    pub command: Option<String>,
    pub code: Option<String>,
    pub parameters: Option<Value>,
    pub output_schema: Option<Value>,
    pub timeout_seconds: Option<i64>,
    pub retry: Option<Value>,
    pub concurrency: Option<i64>,
    pub secrets: Option<Vec<String>>,
    /// Inline definition, or (in pack files) the name of `workflows/NAME.yaml`.
    pub workflow: Option<Value>,
    pub http: Option<Value>,
    pub container: Option<Value>,
    pub with_items: Option<String>,
    pub enabled: Option<bool>,
    /// Roles that may run it by hand (`admin`, `editor`, `executor`); absent: every role
    /// with the run permission.
    pub run_roles: Option<Vec<String>>,
    /// Whether its sandbox has network (default true).
    pub network: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActionDef {
    pub action_ref: Ref,
    pub description: Option<String>,
    pub runner_type: RunnerType,
    pub entry_point: Option<String>,
    pub command: Option<String>,
    pub code: Option<String>,
    pub parameters: Value,
    pub params: ParamSchema,
    pub output_schema: Option<Value>,
    pub timeout_seconds: Option<i32>,
    pub retry: Option<RetryPolicy>,
    pub concurrency: Option<i32>,
    pub secrets: Vec<String>,
    pub workflow: Option<Value>,
    pub http: Option<Value>,
    pub container: Option<Value>,
    pub with_items: Option<String>,
    pub enabled: bool,
    pub run_roles: Option<Vec<Role>>,
    pub network: bool,
}

impl ActionSpec {
    /// `fallback_name` is the file stem for pack files. An inline `workflow` must already
    /// be resolved to a mapping (the loader reads `workflows/NAME.yaml`).
    pub fn check(self, pack: &PackRef, fallback_name: Option<&str>) -> Result<ActionDef, SpecError> {
        let action_ref =
            resolve_ref(pack, self.pack.as_deref(), self.action_ref.as_deref(), self.name.as_deref(), fallback_name)?;
        let Some(runner) = self.runner_type.as_deref() else {
            return err(
                "runner_type",
                "missing: say how the action runs (builtin, shell, python, node, http, container, workflow, inquiry)",
            );
        };
        let runner_type = RunnerType::parse(runner).or_else(|e| err("runner_type", e))?;
        if let Some(ep) = &self.entry_point {
            check_relative_path("entry_point", ep)?;
        }
        let has_body = self.entry_point.is_some() || self.command.is_some() || self.code.is_some();
        match runner_type {
            RunnerType::Shell if self.command.is_none() && self.entry_point.is_none() => {
                return err("command", "a shell action needs command or entry_point");
            }
            RunnerType::Python | RunnerType::Node if self.code.is_none() && self.entry_point.is_none() => {
                return err("entry_point", format!("a {runner_type} action needs entry_point or code"));
            }
            RunnerType::Http if self.http.is_none() => {
                return err("http", "an http action needs an http block with url");
            }
            RunnerType::Container => match &self.container {
                Some(c) if c.get("image").and_then(Value::as_str).is_some() => {}
                _ => return err("container", "a container action needs container.image"),
            },
            RunnerType::Workflow => match &self.workflow {
                Some(w) => check_workflow(w)?,
                None => {
                    return err(
                        "workflow",
                        "a workflow action needs workflow (an inline definition or a workflows/ file name)",
                    )
                }
            },
            RunnerType::Inquiry if has_body => {
                return err("runner_type", "an inquiry action takes no entry_point, command or code");
            }
            _ => {}
        }
        let parameters = self.parameters.unwrap_or(Value::Object(Default::default()));
        let params = ParamSchema::parse(&parameters).or_else(|e| err("parameters", e))?;
        if let Some(schema) = &self.output_schema {
            if let Err(e) = jsonschema::validator_for(schema) {
                return err("output_schema", format!("not a valid JSON Schema: {e}"));
            }
        }
        let timeout_seconds = match self.timeout_seconds {
            None => None,
            Some(t) if (1..=i32::MAX as i64).contains(&t) => Some(t as i32),
            Some(t) => return err("timeout_seconds", format!("must be a positive number of seconds, got {t}")),
        };
        let concurrency = match self.concurrency {
            None => None,
            Some(c) if (1..=i32::MAX as i64).contains(&c) => Some(c as i32),
            Some(c) => return err("concurrency", format!("must be at least 1, got {c}")),
        };
        let retry = self.retry.as_ref().map(RetryPolicy::parse).transpose()?;
        let secrets = self.secrets.unwrap_or_default();
        if let Some(bad) = secrets.iter().find(|k| k.is_empty()) {
            return err("secrets", format!("datastore key {bad:?} must not be empty"));
        }
        if let Some(items) = &self.with_items {
            check_value("with_items", &Value::String(items.clone())).or_else(|e| err("with_items", e))?;
        }
        if let Some(h) = &self.http {
            check_http(h)?;
            check_value("http", h).or_else(|e| err("http", e))?;
        }
        let run_roles = match self.run_roles {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|name| match Role::parse(name) {
                        Some(Role::Viewer) | None => err(
                            "run_roles",
                            format!("{name:?} is not a role that runs actions: expected admin, editor or executor"),
                        ),
                        Some(role) => Ok(role),
                    })
                    .collect::<Result<Vec<Role>, SpecError>>()?,
            ),
        };
        Ok(ActionDef {
            action_ref,
            description: self.description,
            runner_type,
            entry_point: self.entry_point,
            command: self.command,
            code: self.code,
            parameters,
            params,
            output_schema: self.output_schema,
            timeout_seconds,
            retry,
            concurrency,
            secrets,
            workflow: self.workflow,
            http: self.http,
            container: self.container,
            with_items: self.with_items,
            enabled: self.enabled.unwrap_or(true),
            run_roles,
            network: self.network.unwrap_or(true),
        })
    }
}

/// The methods an http action may use (in any case; the runner sends them upper-cased).
pub const HTTP_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
/// The fields of an action's `http` block.
pub const HTTP_FIELDS: [&str; 6] = ["method", "url", "headers", "query", "body", "timeout_seconds"];

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Checks the shape of an action's `http` block: only [`HTTP_FIELDS`]; `url` a string,
/// `http://` or `https://` unless a template makes it; `method` one of [`HTTP_METHODS`]
/// unless a template makes it; `headers` a mapping of header names to strings (numbers and
/// booleans are sent as text); `query` a mapping of names to such values or lists of them;
/// `timeout_seconds` a positive whole number. What templates render is checked again when
/// the action runs.
pub fn check_http(http: &Value) -> Result<(), SpecError> {
    use crate::domain::params::kind;
    let Value::Object(block) = http else {
        return err("http", format!("must be a mapping with {}, got {}", HTTP_FIELDS.join(", "), kind(http)));
    };
    if let Some(unknown) = block.keys().find(|k| !HTTP_FIELDS.contains(&k.as_str())) {
        return err(&format!("http.{unknown}"), format!("unknown field: expected one of {}", HTTP_FIELDS.join(", ")));
    }
    match block.get("url") {
        None | Some(Value::Null) => return err("http.url", "missing: the URL to call"),
        Some(Value::String(url)) => {
            let lower = url.trim_start().to_ascii_lowercase();
            if !is_template(url) && !lower.starts_with("http://") && !lower.starts_with("https://") {
                return err("http.url", format!("{url:?} is not an http:// or https:// URL"));
            }
        }
        Some(other) => return err("http.url", format!("must be a string, got {}", kind(other))),
    }
    match block.get("method") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if is_template(m) || HTTP_METHODS.contains(&m.to_ascii_uppercase().as_str()) => {}
        Some(other) => {
            return err("http.method", format!("{other} is not one of {}", HTTP_METHODS.join(", ")));
        }
    }
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    for (field, lists) in [("headers", false), ("query", true)] {
        match block.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    if field == "headers" && !is_header_name(name) {
                        return err(&format!("http.headers.{name}"), "not a valid header name");
                    }
                    let ok =
                        scalar(value) || (lists && matches!(value, Value::Array(items) if items.iter().all(scalar)));
                    if !ok {
                        let want = if lists { "a string or a list of strings" } else { "a string" };
                        return err(&format!("http.{field}.{name}"), format!("must be {want}, got {}", kind(value)));
                    }
                }
            }
            Some(other) => return err(&format!("http.{field}"), format!("must be a mapping, got {}", kind(other))),
        }
    }
    match block.get("timeout_seconds") {
        None | Some(Value::Null) => {}
        Some(t) if t.as_u64().is_some_and(|t| (1..=i32::MAX as u64).contains(&t)) => {}
        Some(t) => return err("http.timeout_seconds", format!("must be a positive number of seconds, got {t}")),
    }
    Ok(())
}

/// An HTTP header name: one or more token characters (RFC 9110).
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Validates a workflow definition before it is stored
/// ([`crate::domain::workflow::WorkflowDef::parse`]): the refusal names the task and field.
pub fn check_workflow(workflow: &Value) -> Result<(), SpecError> {
    crate::domain::workflow::WorkflowDef::parse(workflow)
        .map(|_| ())
        .map_err(|e| SpecError { field: e.field, message: e.message })
}

/// A trigger body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct TriggerSpec {
    #[serde(rename = "ref")]
    pub trigger_ref: Option<String>,
    pub name: Option<String>,
    pub pack: Option<String>,
    pub description: Option<String>,
    #[serde(rename = "type")]
    pub trigger_type: Option<String>,
    pub parameters: Option<Value>,
    pub payload_schema: Option<Value>,
    pub webhook_secret: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TriggerDef {
    pub trigger_ref: Ref,
    pub description: Option<String>,
    pub trigger_type: TriggerType,
    pub parameters: Value,
    pub payload_schema: Option<Value>,
    pub webhook_secret: Option<String>,
    pub enabled: bool,
}

impl TriggerSpec {
    pub fn check(self, pack: &PackRef, fallback_name: Option<&str>) -> Result<TriggerDef, SpecError> {
        let trigger_ref =
            resolve_ref(pack, self.pack.as_deref(), self.trigger_ref.as_deref(), self.name.as_deref(), fallback_name)?;
        let Some(t) = self.trigger_type.as_deref() else {
            return err("type", "missing: webhook, timer.interval, timer.cron, timer.date or custom");
        };
        let trigger_type = TriggerType::parse(t).or_else(|e| err("type", e))?;
        let parameters = self.parameters.unwrap_or(Value::Object(Default::default()));
        if !parameters.is_object() {
            return err("parameters", "must be a mapping");
        }
        trigger_type.check_parameters(&parameters).or_else(|e| err("parameters", e))?;
        if let Some(schema) = &self.payload_schema {
            if let Err(e) = jsonschema::validator_for(schema) {
                return err("payload_schema", format!("not a valid JSON Schema: {e}"));
            }
        }
        if self.webhook_secret.is_some() && trigger_type != TriggerType::Webhook {
            return err("webhook_secret", "only webhook triggers take a webhook_secret");
        }
        if self.webhook_secret.as_deref().is_some_and(str::is_empty) {
            return err("webhook_secret", "must not be empty");
        }
        Ok(TriggerDef {
            trigger_ref,
            description: self.description,
            trigger_type,
            parameters,
            payload_schema: self.payload_schema,
            webhook_secret: self.webhook_secret,
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

/// A custom sensor (pack files only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorSpec {
    #[serde(rename = "ref")]
    pub sensor_ref: Option<String>,
    pub name: Option<String>,
    pub pack: Option<String>,
    pub description: Option<String>,
    pub runner_type: Option<String>,
    pub entry_point: Option<String>,
    pub poll_interval: Option<i64>,
    pub trigger: Option<String>,
    pub config: Option<Value>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SensorDef {
    pub sensor_ref: Ref,
    pub description: Option<String>,
    pub runner_type: RunnerType,
    pub entry_point: String,
    pub poll_interval: i32,
    pub trigger: Ref,
    pub config: Value,
    pub enabled: bool,
}

impl SensorSpec {
    pub fn check(self, pack: &PackRef, fallback_name: Option<&str>) -> Result<SensorDef, SpecError> {
        let sensor_ref =
            resolve_ref(pack, self.pack.as_deref(), self.sensor_ref.as_deref(), self.name.as_deref(), fallback_name)?;
        let runner_type =
            RunnerType::parse(self.runner_type.as_deref().unwrap_or("")).or_else(|e| err("runner_type", e))?;
        if !matches!(runner_type, RunnerType::Shell | RunnerType::Python | RunnerType::Node) {
            return err("runner_type", format!("a sensor runs as shell, python or node, not {runner_type}"));
        }
        let Some(entry_point) = self.entry_point else {
            return err("entry_point", "missing: the sensor's program");
        };
        check_relative_path("entry_point", &entry_point)?;
        let poll_interval = match self.poll_interval {
            None => 60,
            Some(p) if (1..=86_400).contains(&p) => p as i32,
            Some(p) => return err("poll_interval", format!("must be 1..86400 seconds, got {p}")),
        };
        let Some(trigger) = self.trigger else {
            return err("trigger", "missing: the trigger ref this sensor fires");
        };
        let trigger = Ref::parse(&trigger).or_else(|e| err("trigger", e.to_string()))?;
        Ok(SensorDef {
            sensor_ref,
            description: self.description,
            runner_type,
            entry_point,
            poll_interval,
            trigger,
            config: self.config.unwrap_or(Value::Object(Default::default())),
            enabled: self.enabled.unwrap_or(true),
        })
    }
}

/// A rule body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct RuleSpec {
    #[serde(rename = "ref")]
    pub rule_ref: Option<String>,
    pub name: Option<String>,
    pub pack: Option<String>,
    pub description: Option<String>,
    pub trigger: Option<String>,
    pub action: Option<String>,
    pub criteria: Option<String>,
    pub action_params: Option<Value>,
    pub enabled: Option<bool>,
    pub notify_on_trigger: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    pub rule_ref: Ref,
    pub description: Option<String>,
    pub trigger: Ref,
    pub action: Ref,
    pub criteria: Option<String>,
    pub action_params: Value,
    pub enabled: bool,
    pub notify_on_trigger: bool,
}

impl RuleSpec {
    pub fn check(self, pack: &PackRef, fallback_name: Option<&str>) -> Result<RuleDef, SpecError> {
        let rule_ref =
            resolve_ref(pack, self.pack.as_deref(), self.rule_ref.as_deref(), self.name.as_deref(), fallback_name)?;
        let Some(trigger) = self.trigger else {
            return err("trigger", "missing: the trigger ref this rule listens to");
        };
        let trigger = Ref::parse(&trigger).or_else(|e| err("trigger", e.to_string()))?;
        let Some(action) = self.action else {
            return err("action", "missing: the action ref this rule runs");
        };
        let action = Ref::parse(&action).or_else(|e| err("action", e.to_string()))?;
        let criteria = self.criteria.filter(|c| !c.trim().is_empty());
        if let Some(c) = &criteria {
            check_criteria(c).or_else(|e| err("criteria", e))?;
        }
        let action_params = self.action_params.unwrap_or(Value::Object(Default::default()));
        if !action_params.is_object() {
            return err("action_params", "must be a mapping of parameter names to values or templates");
        }
        check_value("action_params", &action_params).or_else(|e| err("action_params", e))?;
        Ok(RuleDef {
            rule_ref,
            description: self.description,
            trigger,
            action,
            criteria,
            action_params,
            enabled: self.enabled.unwrap_or(true),
            notify_on_trigger: self.notify_on_trigger.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn http_action(http: Value) -> Result<ActionDef, SpecError> {
        let spec = ActionSpec {
            name: Some("call".into()),
            runner_type: Some("http".into()),
            http: Some(http),
            ..Default::default()
        };
        spec.check(&PackRef::parse("p").unwrap(), None)
    }

    #[test]
    fn http_blocks_are_checked_field_by_field() {
        let good = json!({"method": "post", "url": "https://example.test/x?a={{ params.a }}",
            "headers": {"Authorization": "Bearer {{ secret.token }}", "X-Count": 3},
            "query": {"tag": ["a", "b"], "n": 1}, "body": {"any": ["json"]}, "timeout_seconds": 5});
        assert!(http_action(good).is_ok());
        assert!(http_action(json!({"url": "{{ params.base }}/x", "method": "{{ params.m }}"})).is_ok());
        let field = |http: Value| http_action(http).unwrap_err();
        let e = field(json!({"method": "GET"}));
        assert_eq!(e.field, "http.url", "{e:?}");
        assert_eq!(field(json!({"url": 3})).field, "http.url");
        assert!(field(json!({"url": "ftp://x"})).message.contains("http:// or https://"));
        let e = field(json!({"url": "http://x", "method": "FETCH"}));
        assert_eq!((e.field.as_str(), e.message.contains("GET, POST")), ("http.method", true), "{e:?}");
        assert_eq!(field(json!({"url": "http://x", "headers": ["a"]})).field, "http.headers");
        assert_eq!(field(json!({"url": "http://x", "headers": {"X-A": {"b": 1}}})).field, "http.headers.X-A");
        assert_eq!(field(json!({"url": "http://x", "headers": {"bad name": "v"}})).field, "http.headers.bad name");
        assert_eq!(field(json!({"url": "http://x", "query": {"q": [{"a": 1}]}})).field, "http.query.q");
        assert_eq!(field(json!({"url": "http://x", "timeout_seconds": 0})).field, "http.timeout_seconds");
        assert_eq!(field(json!({"url": "http://x", "methd": "GET"})).field, "http.methd");
        assert_eq!(field(json!("http://x")).field, "http");
        assert_eq!(field(json!({"url": "http://x", "body": "{{ params | tojson"})).field, "http");
        let none = ActionSpec { name: Some("c".into()), runner_type: Some("http".into()), ..Default::default() };
        assert_eq!(none.check(&PackRef::parse("p").unwrap(), None).unwrap_err().field, "http");
    }
}
