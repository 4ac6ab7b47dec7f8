//! Workflow definitions: parsing and validation, once, at save or pack load.
//!
//! A definition (API.md "Pack directory") is `input` (parameter names), `tasks` and an
//! optional `output` mapping. [`WorkflowDef::parse`] checks everything that can be checked
//! without the database — field types, unique task names, transitions and `depends_on`
//! naming existing tasks, no cycles, no task both in a `depends_on` list and named by a
//! `next` transition, `on_failure` one of the policies, templates that compile — and
//! every refusal names the task and the field. The workflow engine (executor) only ever
//! runs parsed definitions.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::templates::{check_criteria, check_value};
use crate::domain::Ref;
use crate::pack::spec::RetryPolicy;

/// How deep workflows may nest (a workflow task running a workflow ...).
pub const MAX_DEPTH: i32 = 10;

/// A field of a definition that is wrong: `field` is a path such as
/// `workflow.tasks[1] (fetch).next.success`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, WorkflowError> {
    Err(WorkflowError { field: field.into(), message: message.into() })
}

/// The failure policy of a task (`on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop scheduling, cancel running tasks, the workflow fails.
    #[default]
    Abort,
    /// Go on; the task counts as done for its dependants; the workflow ends
    /// `succeeded_with_errors`.
    Continue,
    /// Re-run per the task's `retry` block (default 3 attempts), then abort.
    Retry,
}

/// A task's explicit transitions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Next {
    #[serde(default)]
    pub success: Vec<String>,
    #[serde(default)]
    pub failure: Vec<String>,
    #[serde(default)]
    pub complete: Vec<String>,
}

impl Next {
    fn all(&self) -> impl Iterator<Item = (&'static str, &String)> {
        let s = self.success.iter().map(|t| ("success", t));
        let f = self.failure.iter().map(|t| ("failure", t));
        let c = self.complete.iter().map(|t| ("complete", t));
        s.chain(f).chain(c)
    }
}

/// One task, as written (and as stored in the workflow's state).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    pub name: String,
    pub action: String,
    #[serde(default = "empty_object")]
    pub input: Value,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Next>,
    #[serde(default)]
    pub publish: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_items: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Orquesta-style free text; ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl TaskDef {
    /// The attempts a failed task (or item) gets: its `retry` block's, else 3 under
    /// `on_failure: retry`, else 1.
    pub fn max_attempts(&self) -> u32 {
        match (&self.retry, self.on_failure) {
            (Some(raw), _) => RetryPolicy::parse(raw).map(|r| r.max_attempts).unwrap_or(1),
            (None, OnFailure::Retry) => 3,
            (None, _) => 1,
        }
    }

    /// Seconds to wait before attempt `next_attempt` (2, 3, ...).
    pub fn retry_delay(&self, next_attempt: u32) -> f64 {
        let Some(policy) = self.retry.as_ref().and_then(|r| RetryPolicy::parse(r).ok()) else { return 0.0 };
        let exp = next_attempt.saturating_sub(2) as i32;
        let delay = policy.delay_seconds * policy.backoff_multiplier.powi(exp);
        policy.max_delay_seconds.map_or(delay, |max| delay.min(max))
    }

    /// The transitions out of this task (empty when it has none).
    pub fn transitions(&self) -> Next {
        self.next.clone().unwrap_or_default()
    }

    /// Whether a failure of this task is handled by a transition (then no policy applies).
    pub fn handles_failure(&self) -> bool {
        self.next.as_ref().is_some_and(|n| !n.failure.is_empty() || !n.complete.is_empty())
    }
}

/// A parsed, validated workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDef {
    #[serde(default)]
    pub input: Vec<String>,
    pub tasks: Vec<TaskDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// The top level as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Top {
    #[serde(default)]
    input: Option<Value>,
    tasks: Option<Value>,
    #[serde(default)]
    output: Option<Value>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    version: Option<Value>,
}

impl WorkflowDef {
    /// Parses and validates a definition. Field paths start with `workflow.`.
    pub fn parse(raw: &Value) -> Result<WorkflowDef, WorkflowError> {
        if !raw.is_object() {
            return fail("workflow", "must be a mapping with tasks (and optionally input and output)");
        }
        let top: Top = serde_json::from_value(raw.clone()).or_else(|e| fail("workflow", e.to_string()))?;
        let _ = (top.description, top.version);
        let input = parse_input(top.input)?;
        let Some(Value::Array(raw_tasks)) = top.tasks else {
            return fail("workflow.tasks", "a workflow needs a list of tasks");
        };
        if raw_tasks.is_empty() {
            return fail("workflow.tasks", "a workflow needs at least one task");
        }
        let tasks = raw_tasks.iter().enumerate().map(|(i, t)| parse_task(i, t)).collect::<Result<Vec<_>, _>>()?;
        let mut seen = BTreeSet::new();
        for (i, task) in tasks.iter().enumerate() {
            if !seen.insert(task.name.as_str()) {
                return fail(format!("workflow.tasks[{i}].name"), format!("duplicate task name {:?}", task.name));
            }
        }
        if let Some(output) = &top.output {
            if !output.is_object() {
                return fail("workflow.output", "must be a mapping of names to values or templates");
            }
            check_template("workflow.output", output)?;
        }
        let def = WorkflowDef { input, tasks, output: top.output };
        def.check_graph()?;
        Ok(def)
    }

    /// The task named `name`.
    pub fn task(&self, name: &str) -> Option<&TaskDef> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// Tasks named in some `next` transition: they start only through one.
    pub fn transition_targets(&self) -> BTreeSet<&str> {
        self.tasks.iter().flat_map(|t| t.next.iter().flat_map(|n| n.all().map(|(_, x)| x.as_str()))).collect()
    }

    /// Tasks that start with the workflow: neither `depends_on` nor an incoming transition.
    pub fn initial_tasks(&self) -> Vec<&TaskDef> {
        let targets = self.transition_targets();
        self.tasks.iter().filter(|t| t.depends_on.is_empty() && !targets.contains(t.name.as_str())).collect()
    }

    /// The action refs the tasks run.
    pub fn actions(&self) -> BTreeSet<&str> {
        self.tasks.iter().map(|t| t.action.as_str()).collect()
    }

    fn check_graph(&self) -> Result<(), WorkflowError> {
        let index: HashMap<&str, usize> = self.tasks.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let targets = self.transition_targets();
        for (i, task) in self.tasks.iter().enumerate() {
            let at = task_path(i, &task.name);
            for dep in &task.depends_on {
                if !index.contains_key(dep.as_str()) {
                    return fail(format!("{at}.depends_on"), format!("unknown task {dep:?}"));
                }
                if dep == &task.name {
                    return fail(format!("{at}.depends_on"), "a task cannot depend on itself");
                }
                edges.entry(dep.as_str()).or_default().push(task.name.as_str());
            }
            if let Some(next) = &task.next {
                for (kind, target) in next.all() {
                    if !index.contains_key(target.as_str()) {
                        return fail(format!("{at}.next.{kind}"), format!("unknown task {target:?}"));
                    }
                    edges.entry(task.name.as_str()).or_default().push(target.as_str());
                }
            }
            if !task.depends_on.is_empty() && targets.contains(task.name.as_str()) {
                let from = self
                    .tasks
                    .iter()
                    .find(|t| t.next.iter().any(|n| n.all().any(|(_, x)| x == &task.name)))
                    .map_or("another task", |t| t.name.as_str());
                return fail(
                    format!("{at}.depends_on"),
                    format!(
                        "task {:?} has depends_on but is also started by a next transition of {from:?}: use one or the other",
                        task.name
                    ),
                );
            }
        }
        if let Some(cycle) = find_cycle(&self.tasks, &edges) {
            return fail("workflow.tasks", format!("the tasks form a cycle: {}", cycle.join(" -> ")));
        }
        if self.initial_tasks().is_empty() {
            return fail("workflow.tasks", "no task can start: every task has depends_on or an incoming transition");
        }
        Ok(())
    }
}

fn task_path(i: usize, name: &str) -> String {
    format!("workflow.tasks[{i}] ({name})")
}

fn parse_input(raw: Option<Value>) -> Result<Vec<String>, WorkflowError> {
    match raw {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                // Orquesta's `- name: default` form.
                Value::Object(m) if m.len() == 1 => Ok(m.keys().next().cloned().unwrap_or_default()),
                other => fail(format!("workflow.input[{i}]"), format!("expected a parameter name, got {other}")),
            })
            .collect(),
        Some(other) => fail("workflow.input", format!("expected a list of parameter names, got {other}")),
    }
}

/// Checks the templates inside `value`; the refusal names the exact place
/// (`workflow.tasks[0] (a).input.message`).
fn check_template(path: &str, value: &Value) -> Result<(), WorkflowError> {
    check_value(path, value).or_else(|e| match e.split_once(" template ") {
        Some((field, rest)) => fail(field, format!("template {rest}")),
        None => fail(path, e),
    })
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_task(i: usize, raw: &Value) -> Result<TaskDef, WorkflowError> {
    let name = raw.get("name").and_then(Value::as_str).map(str::to_string);
    let at = match &name {
        Some(n) => task_path(i, n),
        None => return fail(format!("workflow.tasks[{i}].name"), "missing: every task needs a name"),
    };
    let task: TaskDef = serde_json::from_value(raw.clone()).or_else(|e| fail(at.clone(), e.to_string()))?;
    if !is_identifier(&task.name) || task.name.len() > 100 {
        return fail(
            format!("{at}.name"),
            "must be letters, digits and _ (not starting with a digit), so templates can read task_NAME.result",
        );
    }
    Ref::parse(&task.action).or_else(|e| fail(format!("{at}.action"), e.to_string()))?;
    if !task.input.is_object() {
        return fail(format!("{at}.input"), "must be a mapping of parameter names to values or templates");
    }
    check_template(&format!("{at}.input"), &task.input)?;
    check_template(&format!("{at}.publish"), &Value::Object(task.publish.clone()))?;
    if let Some(items) = &task.with_items {
        check_template(&format!("{at}.with_items"), &Value::String(items.clone()))?;
    }
    if task.concurrency == Some(0) {
        return fail(format!("{at}.concurrency"), "must be at least 1 (leave it out for no limit)");
    }
    if task.concurrency.is_some() && task.with_items.is_none() {
        return fail(format!("{at}.concurrency"), "only a with_items task takes concurrency");
    }
    if task.timeout_seconds == Some(0) {
        return fail(format!("{at}.timeout_seconds"), "must be a positive number of seconds");
    }
    if let Some(retry) = &task.retry {
        RetryPolicy::parse(retry).or_else(|e| fail(format!("{at}.{}", e.field), e.message))?;
    }
    if let Some(when) = &task.when {
        check_criteria(when).or_else(|e| fail(format!("{at}.when"), e))?;
    }
    if let Some(next) = &task.next {
        for (kind, target) in next.all() {
            if target == &task.name {
                return fail(format!("{at}.next.{kind}"), "a task cannot transition to itself");
            }
        }
    }
    Ok(task)
}

/// A cycle of the task graph (names, first repeated at the end), if any: a depth-first
/// search in definition order.
fn find_cycle(tasks: &[TaskDef], edges: &BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(node, Mark::Open);
        path.push(node);
        for &next in edges.get(node).map(Vec::as_slice).unwrap_or_default() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.to_string());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, edges, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    for task in tasks {
        if marks.get(task.name.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(task.name.as_str(), edges, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The one-task workflow an action-level `with_items` (T1.5) stands for: task `items` runs
/// the action itself once per item, with the parent's parameters plus `item` and
/// `item_index`. The engine seeds such a workflow's variables with the parent's
/// parameters, so `with_items: "{{ items }}"` reads the action's own parameter.
pub fn with_items_shorthand(action_ref: &str, with_items: &str, params: &Value) -> WorkflowDef {
    let mut input = Map::new();
    if let Value::Object(p) = params {
        for name in p.keys() {
            let quoted = serde_json::to_string(name).unwrap_or_default();
            input.insert(name.clone(), Value::String(format!("{{{{ execution.params[{quoted}] }}}}")));
        }
    }
    input.insert("item".into(), Value::String("{{ item }}".into()));
    input.insert("item_index".into(), Value::String("{{ item_index }}".into()));
    WorkflowDef {
        input: Vec::new(),
        tasks: vec![TaskDef {
            name: "items".into(),
            action: action_ref.into(),
            input: Value::Object(input),
            depends_on: Vec::new(),
            next: None,
            publish: Map::new(),
            with_items: Some(with_items.to_string()),
            concurrency: None,
            retry: None,
            timeout_seconds: None,
            on_failure: OnFailure::Abort,
            when: None,
            description: None,
        }],
        // The parent's result.output: every item's output, in item order.
        output: Some(Value::String("{{ task_items.result.output }}".into())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn err(v: Value) -> String {
        WorkflowDef::parse(&v).unwrap_err().to_string()
    }

    #[test]
    fn the_contract_example_parses() {
        let def = WorkflowDef::parse(&json!({
            "input": ["items"],
            "tasks": [
                {"name": "fetch", "action": "core.echo", "input": {"message": "{{ execution.params.items | length }}"},
                 "publish": {"count": "{{ result.output.count }}"}},
                {"name": "each", "action": "core.echo", "depends_on": ["fetch"],
                 "with_items": "{{ execution.params.items }}", "concurrency": 3, "input": {"message": "{{ item }}"},
                 "retry": {"max_attempts": 3, "delay_seconds": 1}, "on_failure": "continue"},
                {"name": "cleanup", "action": "core.noop", "next": {}}
            ],
            "output": {"total": "{{ count }}"}
        }))
        .unwrap();
        assert_eq!(def.initial_tasks().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["fetch", "cleanup"]);
        assert_eq!(def.tasks[1].max_attempts(), 3);
        assert_eq!(def.tasks[1].on_failure, OnFailure::Continue);
    }

    #[test]
    fn refusals_name_the_task_and_the_field() {
        let t = |tasks: Value| json!({ "tasks": tasks });
        let e = err(t(json!([{"name": "a", "action": "core.noop", "next": {"success": ["zz"]}}])));
        assert!(e.contains("tasks[0] (a).next.success") && e.contains("unknown task \"zz\""), "{e}");
        let e = err(t(json!([{"name": "a", "action": "core.noop", "depends_on": ["b"]}])));
        assert!(e.contains("(a).depends_on") && e.contains("\"b\""), "{e}");
        let e = err(t(json!([{"name": "a", "action": "core.noop"}, {"name": "a", "action": "core.noop"}])));
        assert!(e.contains("duplicate task name"), "{e}");
        let e = err(t(json!([
            {"name": "s", "action": "core.noop"},
            {"name": "a", "action": "core.noop", "depends_on": ["s", "b"]},
            {"name": "b", "action": "core.noop", "depends_on": ["a"]}
        ])));
        assert!(e.contains("cycle") && e.contains("a -> b -> a"), "{e}");
        let e = err(t(json!([
            {"name": "a", "action": "core.noop", "next": {"success": ["b"]}},
            {"name": "b", "action": "core.noop", "depends_on": ["a"]}
        ])));
        assert!(e.contains("(b).depends_on") && e.contains("next transition of \"a\""), "{e}");
        let e = err(t(json!([{"name": "a", "action": "core.noop", "on_failure": "explode"}])));
        assert!(e.contains("(a)") && e.contains("explode"), "{e}");
        let e = err(t(json!([{"name": "a", "action": "core.noop", "input": {"m": "{{ oops("}}])));
        assert!(e.contains("(a).input"), "{e}");
        let e = err(t(json!([{"name": "a", "action": "nodot"}])));
        assert!(e.contains("(a).action"), "{e}");
        let e = err(t(json!([{"name": "a", "action": "core.noop", "when": "{{ x == }}"}])));
        assert!(e.contains("(a).when"), "{e}");
        let e = err(t(json!([{"name": "a", "action": "core.noop", "bogus": 1}])));
        assert!(e.contains("(a)") && e.contains("bogus"), "{e}");
    }

    #[test]
    fn transitions_only_start_their_targets() {
        let def = WorkflowDef::parse(&json!({"tasks": [
            {"name": "c", "action": "core.noop", "depends_on": ["b"]},
            {"name": "b", "action": "core.noop", "depends_on": ["a"]},
            {"name": "a", "action": "core.noop", "next": {"failure": ["d"]}},
            {"name": "d", "action": "core.noop"}
        ]}))
        .unwrap();
        assert_eq!(def.initial_tasks().iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(def.task("a").unwrap().handles_failure());
    }
}
