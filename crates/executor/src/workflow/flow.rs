//! One workflow's state and how it moves: which tasks start, what a child's end does,
//! when the workflow ends. Pure (no database): [`super::step`] loads a [`Flow`] under the
//! workflow row's lock, feeds it the children that ended, and writes back what it decided
//! (new children, cancels, the state, the end) in the same transaction.
//!
//! Rules (API.md "Workflow rules, precisely"): a task starts when every task of its
//! `depends_on` has ended successfully (or failed under `on_failure: continue`, or was
//! skipped by its `when`), or through a `next` transition; each task starts at most once
//! (the graph has no cycles). A failure handled by `next.failure`/`next.complete` triggers
//! no policy. `abort` cancels the running tasks and fails the workflow; `continue` goes on
//! and ends it `succeeded_with_errors`; a task's `retry` block (or `on_failure: retry`,
//! default 3 attempts) re-runs a failed task or item before its policy applies.

use std::collections::{BTreeMap, HashMap};

use attune_core::domain::workflow::{OnFailure, TaskDef, WorkflowDef};
use attune_core::domain::{ExecutionStatus, RunnerType};
use minijinja::Environment;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::context::Context;

/// Most children one step creates (with-items batches): the rest wait for the next step.
pub const BATCH: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Running,
    Succeeded,
    Failed,
    /// Its `when` was false: it counts as done for its dependants.
    Skipped,
}

/// With-items progress of one task.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Items {
    pub total: usize,
    /// The next item to start.
    pub next: usize,
    pub running: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Attempts so far of items that were retried (item index → attempt).
    #[serde(default)]
    pub attempts: BTreeMap<usize, u32>,
    /// Each item's `result.output`, by index.
    #[serde(default)]
    pub outputs: Vec<Value>,
    /// The error of the first item that failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub status: TaskStatus,
    pub attempt: u32,
    #[serde(default)]
    pub result: Value,
    /// Failed under `on_failure: continue`: done for its dependants.
    #[serde(default)]
    pub continued: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Items>,
}

/// What a task's action is, as the workflow's tenant resolves its ref, with what
/// admitting its executions needs ([`attune_core::admission`]).
#[derive(Debug, Clone)]
pub struct ActionInfo {
    pub id: i64,
    pub runner_type: RunnerType,
    pub secret_names: Vec<String>,
    pub enabled: bool,
    /// The parsed parameter schema (or why it cannot be parsed).
    pub schema: Result<attune_core::domain::ParamSchema, String>,
    pub timeout_seconds: Option<i32>,
    pub retry: Option<Value>,
}

impl ActionInfo {
    /// An enabled action of `runner_type` without parameters (tests).
    pub fn plain(id: i64, runner_type: RunnerType) -> ActionInfo {
        ActionInfo {
            id,
            runner_type,
            secret_names: Vec::new(),
            enabled: true,
            schema: Ok(Default::default()),
            timeout_seconds: None,
            retry: None,
        }
    }
}

/// A child execution to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChild {
    pub task: String,
    pub item_index: Option<i32>,
    pub action_ref: String,
    /// Rendered, plain (secrets not sealed yet).
    pub parameters: Value,
    /// Secret parameters beyond the action's own: those whose templates read `secret`.
    pub secret_names: Vec<String>,
    pub delay_seconds: f64,
    /// The task's `timeout_seconds`: bounds this child's run instead of its action's.
    pub timeout_seconds: Option<i32>,
}

/// A child that ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub task: String,
    pub item_index: Option<i32>,
    pub status: ExecutionStatus,
    pub result: Value,
}

/// The state of one workflow execution.
#[derive(Debug, Clone)]
pub struct Flow {
    pub def: WorkflowDef,
    pub tasks: BTreeMap<String, TaskState>,
    pub vars: Map<String, Value>,
    pub failed_tasks: i32,
    pub depth: i32,
    /// Children created and not yet consumed.
    pub active: i32,
    pub abort_error: Option<String>,
    /// with-items lists by task.
    pub items: Map<String, Value>,
    pub items_changed: bool,
    /// More with-items children to create in a later step.
    pub wants_step: bool,
    /// Decisions of this step.
    pub created: Vec<NewChild>,
    /// Set when the running children must be canceled (an abort).
    pub cancel: bool,
}

/// How a workflow ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: ExecutionStatus,
    pub result: Value,
}

fn result_doc(output: Value, error: Option<String>) -> Value {
    json!({"exit_code": null, "output": output, "error": error, "truncated": false})
}

impl Flow {
    pub fn new(def: WorkflowDef, vars: Map<String, Value>, depth: i32) -> Flow {
        Flow {
            def,
            tasks: BTreeMap::new(),
            vars,
            failed_tasks: 0,
            depth,
            active: 0,
            abort_error: None,
            items: Map::new(),
            items_changed: false,
            wants_step: false,
            created: Vec::new(),
            cancel: false,
        }
    }

    /// Starts the tasks that start with the workflow.
    pub fn start(&mut self, cx: &Context<'_>) {
        let initial: Vec<String> = self.def.initial_tasks().iter().map(|t| t.name.clone()).collect();
        for name in initial {
            self.start_task(cx, &name);
        }
    }

    /// Stops scheduling: running children are canceled, the workflow fails with `error`
    /// once they have ended.
    pub fn abort(&mut self, error: String) {
        if self.abort_error.is_none() {
            self.abort_error = Some(error);
            self.cancel = true;
            self.wants_step = false;
        }
    }

    /// Takes in one child's end.
    pub fn child_ended(&mut self, cx: &Context<'_>, e: Ended) {
        self.active -= 1;
        let Some(task) = self.def.task(&e.task).cloned() else { return };
        let Some(state) = self.tasks.get_mut(&e.task) else { return };
        if state.status != TaskStatus::Running {
            return;
        }
        let ok = matches!(e.status, ExecutionStatus::Succeeded | ExecutionStatus::SucceededWithErrors);
        if let Some(items) = state.items.as_mut() {
            items.running = items.running.saturating_sub(1);
            let index = e.item_index.unwrap_or(0).max(0) as usize;
            if ok {
                items.succeeded += 1;
                if let Some(slot) = items.outputs.get_mut(index) {
                    *slot = e.result.get("output").cloned().unwrap_or(Value::Null);
                }
            } else {
                let attempt = items.attempts.get(&index).copied().unwrap_or(1);
                if attempt < task.max_attempts() && self.abort_error.is_none() {
                    items.attempts.insert(index, attempt + 1);
                    self.retry_item(cx, &task, index, attempt + 1);
                    return;
                }
                items.failed += 1;
                if items.first_error.is_none() {
                    let error = e.result.get("error").and_then(Value::as_str).unwrap_or("it failed");
                    items.first_error = Some(format!("item {index}: {error}"));
                }
            }
            if self.abort_error.is_none() {
                self.launch_items(cx, &task);
            }
            self.items_done(cx, &task);
            return;
        }
        if ok {
            self.task_ended(cx, &task, true, e.result);
        } else if state.attempt < task.max_attempts() && self.abort_error.is_none() {
            state.attempt += 1;
            let attempt = state.attempt;
            self.run_single(cx, &task, attempt);
        } else {
            self.task_ended(cx, &task, false, e.result);
        }
    }

    /// Creates the next with-items children of every task that has some left (a later step
    /// after a batch).
    pub fn resume(&mut self, cx: &Context<'_>) {
        self.wants_step = false;
        if self.abort_error.is_some() {
            return;
        }
        let waiting: Vec<TaskDef> = self
            .def
            .tasks
            .iter()
            .filter(|t| {
                self.tasks.get(&t.name).is_some_and(|s| {
                    s.status == TaskStatus::Running && s.items.as_ref().is_some_and(|i| i.next < i.total)
                })
            })
            .cloned()
            .collect();
        for task in waiting {
            self.launch_items(cx, &task);
            self.items_done(cx, &task);
        }
    }

    /// The workflow's end, once nothing runs and nothing is left to start.
    pub fn outcome(&self, cx: &Context<'_>, canceling: bool) -> Option<Outcome> {
        if self.active > 0 || self.wants_step {
            return None;
        }
        if canceling {
            let error = Some("canceled".to_string());
            return Some(Outcome { status: ExecutionStatus::Canceled, result: result_doc(Value::Null, error) });
        }
        if let Some(error) = &self.abort_error {
            let mut result = result_doc(Value::Null, Some(error.clone()));
            result["failure_reason"] = json!("task_failed");
            return Some(Outcome { status: ExecutionStatus::Failed, result });
        }
        let output = match &self.def.output {
            None => Value::Null,
            Some(template) => match cx.render(&self.context(cx, None), "output", template) {
                Ok(v) => v,
                Err(e) => {
                    return Some(Outcome {
                        status: ExecutionStatus::Failed,
                        result: result_doc(Value::Null, Some(format!("workflow output: {e}"))),
                    })
                }
            },
        };
        let status =
            if self.failed_tasks > 0 { ExecutionStatus::SucceededWithErrors } else { ExecutionStatus::Succeeded };
        Some(Outcome { status, result: result_doc(output, None) })
    }

    /// The template context: published variables by bare name, then `execution`,
    /// `task_NAME`, `tasks`, the datastore, and `item`/`item_index`/`result` when given.
    fn context(&self, cx: &Context<'_>, extra: Option<&Map<String, Value>>) -> Value {
        let mut map = self.vars.clone();
        let mut tasks = Map::new();
        for (name, state) in &self.tasks {
            if state.status != TaskStatus::Running {
                let entry = json!({"result": state.result, "status": state.status});
                map.insert(format!("task_{name}"), entry.clone());
                tasks.insert(name.clone(), entry);
            }
        }
        map.insert("tasks".into(), Value::Object(tasks));
        cx.add_base(&mut map);
        if let Some(extra) = extra {
            map.extend(extra.clone());
        }
        Value::Object(map)
    }

    fn start_task(&mut self, cx: &Context<'_>, name: &str) {
        if self.tasks.contains_key(name) || self.abort_error.is_some() {
            return;
        }
        let Some(task) = self.def.task(name).cloned() else { return };
        if let Some(when) = &task.when {
            let context = self.context(cx, None);
            match cx.condition(&context, when) {
                Ok(true) => {}
                Ok(false) => {
                    self.tasks.insert(
                        task.name.clone(),
                        TaskState {
                            status: TaskStatus::Skipped,
                            attempt: 0,
                            result: Value::Null,
                            continued: false,
                            items: None,
                        },
                    );
                    self.start_dependants(cx, &task.name);
                    return;
                }
                Err(e) => {
                    self.insert_running(&task.name);
                    let error = format!("task {}: when: {e}", task.name);
                    self.task_ended(cx, &task, false, result_doc(Value::Null, Some(error)));
                    return;
                }
            }
        }
        self.insert_running(&task.name);
        if task.with_items.is_some() {
            self.start_items(cx, &task);
        } else {
            self.run_single(cx, &task, 1);
        }
    }

    fn insert_running(&mut self, name: &str) {
        self.tasks.insert(
            name.to_string(),
            TaskState { status: TaskStatus::Running, attempt: 1, result: Value::Null, continued: false, items: None },
        );
    }

    /// Creates the child of a task without items (attempt `attempt`), or fails the task.
    fn run_single(&mut self, cx: &Context<'_>, task: &TaskDef, attempt: u32) {
        let delay = if attempt > 1 { task.retry_delay(attempt) } else { 0.0 };
        match self.child(cx, task, None, delay) {
            Ok(child) => {
                self.created.push(child);
                self.active += 1;
            }
            Err(error) => self.task_ended(cx, task, false, result_doc(Value::Null, Some(error))),
        }
    }

    /// Renders a child of `task` (item `index` of its list, if any).
    fn child(
        &self,
        cx: &Context<'_>,
        task: &TaskDef,
        index: Option<usize>,
        delay_seconds: f64,
    ) -> Result<NewChild, String> {
        if cx.action(&task.action).is_none() {
            return Err(format!("task {}: action {} does not exist", task.name, task.action));
        }
        let mut extra = Map::new();
        if let Some(i) = index {
            let item = self.items.get(&task.name).and_then(|l| l.get(i)).cloned().unwrap_or(Value::Null);
            extra.insert("item".into(), item);
            extra.insert("item_index".into(), json!(i));
        }
        let context = self.context(cx, Some(&extra));
        let parameters = cx.render(&context, &format!("task {} input", task.name), &task.input)?;
        Ok(NewChild {
            task: task.name.clone(),
            item_index: index.map(|i| i as i32),
            action_ref: task.action.clone(),
            secret_names: attune_core::domain::templates::secret_params(&task.input),
            parameters,
            delay_seconds,
            timeout_seconds: task.timeout_seconds.map(|t| t.min(i32::MAX as u32) as i32),
        })
    }

    fn start_items(&mut self, cx: &Context<'_>, task: &TaskDef) {
        let template = Value::String(task.with_items.clone().unwrap_or_default());
        let list =
            cx.render(&self.context(cx, None), &format!("task {} with_items", task.name), &template).and_then(|v| {
                match v {
                    Value::Array(items) => Ok(items),
                    other => Err(format!("task {}: with_items must render to a list, got {other}", task.name)),
                }
            });
        let list = match list {
            Ok(list) => list,
            Err(error) => return self.task_ended(cx, task, false, result_doc(Value::Null, Some(error))),
        };
        let total = list.len();
        self.items.insert(task.name.clone(), Value::Array(list));
        self.items_changed = true;
        if let Some(state) = self.tasks.get_mut(&task.name) {
            state.items = Some(Items { total, outputs: vec![Value::Null; total], ..Items::default() });
        }
        self.launch_items(cx, task);
        self.items_done(cx, task);
    }

    /// Starts items while fewer than `concurrency` run, at most [`BATCH`] per step.
    fn launch_items(&mut self, cx: &Context<'_>, task: &TaskDef) {
        let limit = task.concurrency.map_or(usize::MAX, |c| c as usize);
        let mut launched = 0;
        loop {
            let Some(items) = self.tasks.get(&task.name).and_then(|s| s.items.as_ref()) else { return };
            if items.next >= items.total || items.running >= limit {
                return;
            }
            if self.created.len() >= BATCH || launched >= BATCH {
                self.wants_step = true;
                return;
            }
            let index = items.next;
            let child = self.child(cx, task, Some(index), 0.0);
            let Some(items) = self.tasks.get_mut(&task.name).and_then(|s| s.items.as_mut()) else { return };
            items.next += 1;
            match child {
                Ok(child) => {
                    items.running += 1;
                    self.created.push(child);
                    self.active += 1;
                    launched += 1;
                }
                Err(error) => {
                    items.failed += 1;
                    items.first_error.get_or_insert_with(|| format!("item {index}: {error}"));
                    if let Some(slot) = items.outputs.get_mut(index) {
                        *slot = json!({ "error": error });
                    }
                }
            }
        }
    }

    fn retry_item(&mut self, cx: &Context<'_>, task: &TaskDef, index: usize, attempt: u32) {
        match self.child(cx, task, Some(index), task.retry_delay(attempt)) {
            Ok(child) => {
                if let Some(items) = self.tasks.get_mut(&task.name).and_then(|s| s.items.as_mut()) {
                    items.running += 1;
                }
                self.created.push(child);
                self.active += 1;
            }
            Err(_) => {
                if let Some(items) = self.tasks.get_mut(&task.name).and_then(|s| s.items.as_mut()) {
                    items.failed += 1;
                }
                self.items_done(cx, task);
            }
        }
    }

    /// Ends a with-items task once every item has ended.
    fn items_done(&mut self, cx: &Context<'_>, task: &TaskDef) {
        let Some(state) = self.tasks.get(&task.name) else { return };
        let Some(items) = &state.items else { return };
        if state.status != TaskStatus::Running || items.running > 0 {
            return;
        }
        if items.next < items.total && self.abort_error.is_none() {
            return;
        }
        let ok = items.failed == 0 && items.next >= items.total;
        let error = (!ok).then(|| {
            let first = items.first_error.as_deref().unwrap_or("canceled");
            format!("task {}: {} of {} items failed (first: {first})", task.name, items.failed, items.total)
        });
        let mut result = result_doc(Value::Array(items.outputs.clone()), error);
        result["items"] = json!({"total": items.total, "succeeded": items.succeeded, "failed": items.failed});
        self.task_ended(cx, task, ok, result);
    }

    /// A task ended: its result is recorded and published, its transitions start, its
    /// failure policy applies when no transition handles the failure, and its dependants
    /// start once ready.
    fn task_ended(&mut self, cx: &Context<'_>, task: &TaskDef, ok: bool, result: Value) {
        if let Some(state) = self.tasks.get_mut(&task.name) {
            state.status = if ok { TaskStatus::Succeeded } else { TaskStatus::Failed };
            state.result = result.clone();
        }
        if self.abort_error.is_some() {
            return;
        }
        if !task.publish.is_empty() {
            let mut extra = Map::new();
            extra.insert("result".into(), result.clone());
            let context = self.context(cx, Some(&extra));
            match cx.render(&context, &format!("task {} publish", task.name), &Value::Object(task.publish.clone())) {
                Ok(Value::Object(published)) => self.vars.extend(published),
                Ok(_) => {}
                Err(e) => return self.abort(e),
            }
        }
        let next = task.transitions();
        if ok {
            for target in next.success.iter().chain(&next.complete) {
                self.start_task(cx, target);
            }
        } else if task.handles_failure() {
            for target in next.failure.iter().chain(&next.complete) {
                self.start_task(cx, target);
            }
        } else if task.on_failure == OnFailure::Continue {
            self.failed_tasks += 1;
            if let Some(state) = self.tasks.get_mut(&task.name) {
                state.continued = true;
            }
        } else {
            let error = result.get("error").and_then(Value::as_str).unwrap_or("it failed").to_string();
            return self.abort(format!("task {} failed: {error}", task.name));
        }
        self.start_dependants(cx, &task.name);
    }

    /// Starts the tasks depending on `name` whose every dependency is done.
    fn start_dependants(&mut self, cx: &Context<'_>, name: &str) {
        let ready: Vec<String> = self
            .def
            .tasks
            .iter()
            .filter(|t| t.depends_on.iter().any(|d| d == name) && !self.tasks.contains_key(&t.name))
            .filter(|t| t.depends_on.iter().all(|d| self.done_for_dependants(d)))
            .map(|t| t.name.clone())
            .collect();
        for task in ready {
            self.start_task(cx, &task);
        }
    }

    fn done_for_dependants(&self, name: &str) -> bool {
        self.tasks.get(name).is_some_and(|s| match s.status {
            TaskStatus::Succeeded | TaskStatus::Skipped => true,
            TaskStatus::Failed => s.continued,
            TaskStatus::Running => false,
        })
    }

    /// The actions used by the definition, for [`Context`].
    pub fn action_refs(&self) -> Vec<String> {
        self.def.actions().into_iter().map(str::to_string).collect()
    }
}

/// Actions by ref, as [`Context`] sees them.
pub type Actions = HashMap<String, ActionInfo>;

/// Environment shared by every render of a step.
pub fn environment() -> Environment<'static> {
    attune_core::domain::templates::environment()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn actions() -> Actions {
        ["core.noop", "core.echo", "core.fail"]
            .into_iter()
            .enumerate()
            .map(|(i, r)| (r.to_string(), ActionInfo::plain(i as i64, RunnerType::Builtin)))
            .collect()
    }

    fn flow(def: Value) -> Flow {
        Flow::new(WorkflowDef::parse(&def).unwrap(), Map::new(), 0)
    }

    fn end(f: &mut Flow, cx: &Context<'_>, task: &str, ok: bool, output: Value) {
        let status = if ok { ExecutionStatus::Succeeded } else { ExecutionStatus::Failed };
        let result = json!({"output": output, "error": if ok { Value::Null } else { json!("boom") }});
        f.child_ended(cx, Ended { task: task.into(), item_index: None, status, result });
    }

    fn names(f: &mut Flow) -> Vec<String> {
        std::mem::take(&mut f.created).into_iter().map(|c| c.task).collect()
    }

    #[test]
    fn depends_on_and_publish_flow_in_order() {
        let env = environment();
        let acts = actions();
        let params = json!({"who": "x"});
        let cx = Context::new(&env, &acts, 1, &params, None);
        let mut f = flow(json!({"tasks": [
            {"name": "c", "action": "core.echo", "depends_on": ["b"], "input": {"message": "{{ n }}-{{ task_a.result.output.m }}"}},
            {"name": "b", "action": "core.noop", "depends_on": ["a"]},
            {"name": "a", "action": "core.echo", "input": {"message": "{{ execution.params.who }}"}, "publish": {"n": "{{ result.output.m }}"}}
        ], "output": {"n": "{{ n }}"}}));
        f.start(&cx);
        assert_eq!(f.created[0].parameters, json!({"message": "x"}));
        assert_eq!(names(&mut f), ["a"]);
        end(&mut f, &cx, "a", true, json!({"m": 7}));
        assert_eq!(names(&mut f), ["b"]);
        end(&mut f, &cx, "b", true, Value::Null);
        assert_eq!(f.created[0].parameters, json!({"message": "7-7"}));
        assert_eq!(names(&mut f), ["c"]);
        assert!(f.outcome(&cx, false).is_none());
        end(&mut f, &cx, "c", true, Value::Null);
        let out = f.outcome(&cx, false).unwrap();
        assert_eq!(out.status, ExecutionStatus::Succeeded);
        assert_eq!(out.result["output"], json!({"n": 7}));
    }

    #[test]
    fn policies_abort_continue_retry_and_handled_failures() {
        let env = environment();
        let acts = actions();
        let params = json!({});
        let cx = Context::new(&env, &acts, 1, &params, None);
        let three = |policy: &str| {
            json!({"tasks": [
                {"name": "a", "action": "core.noop"},
                {"name": "b", "action": "core.fail", "depends_on": ["a"], "on_failure": policy},
                {"name": "c", "action": "core.noop", "depends_on": ["b"]}
            ]})
        };
        let mut f = flow(three("abort"));
        f.start(&cx);
        end(&mut f, &cx, "a", true, Value::Null);
        end(&mut f, &cx, "b", false, Value::Null);
        assert_eq!(names(&mut f), ["a", "b"]);
        assert_eq!(f.outcome(&cx, false).unwrap().status, ExecutionStatus::Failed);

        let mut f = flow(three("continue"));
        f.start(&cx);
        end(&mut f, &cx, "a", true, Value::Null);
        end(&mut f, &cx, "b", false, Value::Null);
        end(&mut f, &cx, "c", true, Value::Null);
        assert_eq!(names(&mut f), ["a", "b", "c"]);
        assert_eq!(f.outcome(&cx, false).unwrap().status, ExecutionStatus::SucceededWithErrors);

        let mut f = flow(three("retry"));
        f.start(&cx);
        end(&mut f, &cx, "a", true, Value::Null);
        end(&mut f, &cx, "b", false, Value::Null);
        end(&mut f, &cx, "b", true, Value::Null);
        end(&mut f, &cx, "c", true, Value::Null);
        assert_eq!(names(&mut f), ["a", "b", "b", "c"]);
        assert_eq!(f.outcome(&cx, false).unwrap().status, ExecutionStatus::Succeeded);

        let mut f = flow(json!({"tasks": [
            {"name": "a", "action": "core.fail", "next": {"failure": ["h"]}},
            {"name": "h", "action": "core.noop"}
        ]}));
        f.start(&cx);
        end(&mut f, &cx, "a", false, Value::Null);
        end(&mut f, &cx, "h", true, Value::Null);
        assert_eq!(names(&mut f), ["a", "h"]);
        assert_eq!(f.outcome(&cx, false).unwrap().status, ExecutionStatus::Succeeded);
    }

    #[test]
    fn with_items_respects_concurrency() {
        let env = environment();
        let acts = actions();
        let params = json!({"xs": [1, 2, 3, 4, 5]});
        let cx = Context::new(&env, &acts, 1, &params, None);
        let mut f = flow(json!({"tasks": [
            {"name": "each", "action": "core.echo", "with_items": "{{ execution.params.xs }}", "concurrency": 2,
             "input": {"message": "{{ item }}/{{ item_index }}"}}
        ]}));
        f.start(&cx);
        let first = std::mem::take(&mut f.created);
        assert_eq!(first.len(), 2);
        assert_eq!(first[1].parameters, json!({"message": "2/1"}));
        for i in 0..5 {
            let result = json!({"output": i});
            f.child_ended(
                &cx,
                Ended { task: "each".into(), item_index: Some(i), status: ExecutionStatus::Succeeded, result },
            );
        }
        assert_eq!(f.created.len(), 3);
        let out = f.outcome(&cx, false).unwrap();
        assert_eq!(f.tasks["each"].result["output"], json!([0, 1, 2, 3, 4]));
        assert_eq!(out.status, ExecutionStatus::Succeeded);
    }
}
