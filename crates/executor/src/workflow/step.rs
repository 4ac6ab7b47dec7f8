//! One step of one workflow, in one transaction: starting it (claimed `scheduled`), or
//! advancing it under its row's lock (`SELECT ... FOR UPDATE SKIP LOCKED`) by consuming
//! its ended children, creating the next with-items batch, or carrying out a cancel. The
//! decisions are [`Flow`]'s; this module loads and stores them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use attune_core::admission::{admit_rendered, ActionTerms};
use attune_core::datastore::{load_for_templates, TemplateItems};
use attune_core::domain::templates::{value_reads, DatastoreReads};
use attune_core::domain::workflow::{with_items_shorthand, WorkflowDef, MAX_DEPTH};
use attune_core::domain::{ExecutionStatus, ParamSchema, RunnerType};
use attune_core::execution::unseal_parameters;
use attune_core::handoff::{self, Claimed, Reservation};
use attune_core::wakeup::Tags;
use attune_core::Context as Ctx;
use minijinja::Environment;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::PgConnection;

use super::context::Context;
use super::flow::{environment, ActionInfo, Actions, Ended, Flow, TaskState};
use super::state::{object, saved, stored_state, Saved, StateCache};

/// Workflows started per transaction.
pub const START_BATCH: i64 = 50;
/// Workflows looked at per round for each kind of pending work.
pub const PENDING_BATCH: i64 = 200;

/// What a committed step should wake, and hand over.
#[derive(Debug, Default)]
pub struct Pokes {
    /// The runner types of the children admitted (`scheduled`): whom to wake — the
    /// workers, the inquiry opener, the engine itself (child workflows).
    pub scheduled: Tags,
    /// Children were asked to cancel: the workers.
    pub cancel: bool,
    /// Something changed at all (and the change log grew).
    pub progress: bool,
    /// The engine has more to do at once: a with-items batch to create, a full batch
    /// taken (more may wait), or a nested workflow that ended or changed status (its
    /// parent's step) — the engines are woken for it, not only the change-log readers.
    pub again: bool,
    /// Tasks created `running` on an idle lane of this process: handed over with the commit
    /// (`attune_core::handoff::commit_and_hand`).
    pub handed: Vec<(Reservation, Claimed)>,
}

impl Pokes {
    fn merge(&mut self, other: Pokes) {
        self.handed.extend(other.handed);
        self.scheduled = self.scheduled.with(other.scheduled);
        self.cancel |= other.cancel;
        self.progress |= other.progress;
        self.again |= other.again;
    }
}

pub struct Engine {
    ctx: Ctx,
    env: Environment<'static>,
    actions: ActionCache,
    states: StateCache,
}

/// A child that ended, as `lock_step.sql` hands it over.
#[derive(Deserialize)]
struct EndedChild {
    task: Option<String>,
    item_index: Option<i32>,
    status: ExecutionStatus,
    result: Option<Value>,
}

/// The actions of the workflows stepped lately, per tenant and action refs, as of one
/// `definition_version` (every change to an action moves it): a step reads the version
/// with its lock and loads the actions again only when it moved — a round trip less per
/// step of a long workflow.
#[derive(Default)]
struct ActionCache {
    cached: Mutex<(i64, ActionsByRefs)>,
}

/// Actions by tenant and the refs a workflow runs.
type ActionsByRefs = HashMap<(i64, Vec<String>), Arc<Actions>>;

/// Most entries the cache keeps (it starts over beyond).
const ACTION_CACHE_ENTRIES: usize = 1024;

impl ActionCache {
    async fn get(
        &self,
        tx: &mut PgConnection,
        tenant_id: i64,
        refs: Vec<String>,
        version: i64,
    ) -> Result<Arc<Actions>, sqlx::Error> {
        let key = (tenant_id, refs);
        {
            let cached = self.cached.lock().expect("action cache lock");
            if cached.0 == version {
                if let Some(actions) = cached.1.get(&key) {
                    return Ok(actions.clone());
                }
            }
        }
        // Read in a later snapshot than `version`: at worst newer than it, and then
        // loaded again at the next step that sees the newer version.
        let actions = Arc::new(load_actions(tx, tenant_id, &key.1).await?);
        let mut cached = self.cached.lock().expect("action cache lock");
        if cached.0 != version || cached.1.len() >= ACTION_CACHE_ENTRIES {
            *cached = (version, HashMap::new());
        }
        cached.1.insert(key, actions.clone());
        Ok(actions)
    }
}

/// What a step saves of a workflow's state.
enum Save<'a> {
    /// At its start: all of it, with its definition (as stored).
    Whole(Value),
    /// At a later step: the task states that differ from these (the state it began with).
    ChangedSince(&'a BTreeMap<String, TaskState>),
}

/// The workflow being stepped.
struct Parent {
    id: i64,
    tenant_id: i64,
    canceling: bool,
    params: Value,
}

/// The engine's look at the start of a round (`sql/workflow/look.sql`).
pub struct Look {
    /// A workflow waits to be started.
    pub start: bool,
    /// Workflows with work to do.
    pub pending: Vec<i64>,
}

impl Engine {
    pub fn new(ctx: Ctx) -> Engine {
        Engine { ctx, env: environment(), actions: ActionCache::default(), states: StateCache::default() }
    }

    /// What a round has to do, in one look (no lock): whether a workflow waits to be
    /// started, and the workflows with pending work.
    pub async fn look(&self) -> Result<Look, sqlx::Error> {
        let row = sqlx::query_file!("../../sql/workflow/look.sql", PENDING_BATCH).fetch_one(&self.ctx.pool).await?;
        Ok(Look { start: row.start, pending: row.pending })
    }

    /// Claims scheduled workflows and starts them (when the look saw one waiting).
    pub async fn start_round(&self, any_waiting: bool) -> Result<Pokes, sqlx::Error> {
        if !any_waiting {
            return Ok(Pokes::default());
        }
        let mut tx = self.ctx.pool.begin().await?;
        let rows = sqlx::query_file!("../../sql/workflow/claim_scheduled.sql", START_BATCH).fetch_all(&mut *tx).await?;
        let mut pokes =
            Pokes { progress: !rows.is_empty(), again: rows.len() as i64 == START_BATCH, ..Pokes::default() };
        let mut started = Vec::new();
        for row in rows {
            let plain = unseal_parameters(&self.ctx.keys.encryption, &row.parameters, row.secret_params.as_deref());
            let depth = row.parent_depth.map_or(0, |d| d + 1);
            let parent = Parent {
                id: row.id,
                tenant_id: row.tenant_id,
                canceling: false,
                params: plain.clone().unwrap_or(Value::Null),
            };
            let flow = plain.and_then(|params| {
                definition(&row.action_ref, row.workflow.as_ref(), row.with_items.as_deref(), &params, depth)
            });
            match flow {
                Ok(flow) => {
                    let (p, saved) = self.apply_start(&mut tx, &parent, flow).await?;
                    pokes.merge(p);
                    started.extend(saved.map(|saved| (parent.id, saved)));
                }
                Err(error) => {
                    let result = json!({"exit_code": null, "output": null, "error": error, "truncated": false,
                                        "failure_reason": "invalid_workflow"});
                    finish(&mut tx, parent.id, ExecutionStatus::Failed, &result).await?;
                    // A nested one: its parent's step.
                    pokes.again |= depth > 0;
                }
            }
        }
        handoff::commit_and_hand(&self.ctx.pool, tx, std::mem::take(&mut pokes.handed)).await?;
        for (id, saved) in started {
            self.states.put(id, saved);
        }
        Ok(pokes)
    }

    /// Starts `flow`: its first tasks, and its state saved whole. The state to cache once
    /// committed, unless it ended at once.
    async fn apply_start(
        &self,
        tx: &mut PgConnection,
        parent: &Parent,
        mut flow: Flow,
    ) -> Result<(Pokes, Option<Saved>), sqlx::Error> {
        let actions = load_actions(tx, parent.tenant_id, &flow.action_refs()).await?;
        // The definition as stored, once: for its datastore reads and for the state row.
        let definition = serde_json::to_value(&flow.def).unwrap_or(Value::Null);
        let reads = value_reads(&definition);
        let items = self.load_items(tx, parent.tenant_id, &reads).await?;
        let cx = Context::new(&self.env, &actions, parent.id, &parent.params, items.as_ref());
        flow.start(&cx);
        let (pokes, version) = self.apply(tx, parent, &mut flow, &cx, &actions, Save::Whole(definition)).await?;
        Ok((pokes, version.map(|version| saved(version, flow, reads))))
    }

    /// The workflows with pending work (from the look), each stepped in its own transaction.
    pub async fn step_round(&self, ids: Vec<i64>) -> Result<Pokes, sqlx::Error> {
        let mut pokes = Pokes { again: ids.len() as i64 >= PENDING_BATCH, ..Pokes::default() };
        for id in ids {
            pokes.merge(self.step(id).await?);
        }
        Ok(pokes)
    }

    /// Advances workflow `id` under the lock of its row and of its state's row (skipped when
    /// another executor holds them, or when it has no state yet).
    pub async fn step(&self, id: i64) -> Result<Pokes, sqlx::Error> {
        let cached = self.states.take(id);
        let known = cached.as_ref().map_or(-1, |c| c.version);
        let mut tx = self.ctx.pool.begin().await?;
        let Some(row) =
            sqlx::query_file!("../../sql/workflow/lock_step.sql", id, known).fetch_optional(&mut *tx).await?
        else {
            tx.commit().await?;
            if let Some(cached) = cached {
                self.states.put(id, cached);
            }
            return Ok(Pokes::default());
        };
        let ended: Vec<EndedChild> = match serde_json::from_value(row.ended) {
            Ok(ended) => ended,
            Err(e) => return Err(sqlx::Error::Decode(format!("a workflow's ended children: {e}").into())),
        };
        let consumed = !ended.is_empty();
        let (Some(version), false) = (row.version, row.status.is_terminal()) else {
            tx.commit().await?;
            return Ok(Pokes { progress: consumed, ..Pokes::default() });
        };
        // The state as this engine saved it, unless another executor stepped it since (then
        // `lock_step.sql` returned it).
        let state = match cached {
            Some(cached) if cached.version == version => Ok(cached),
            _ => stored_state(version, row.definition, row.tasks, row.variables, row.items),
        };
        let state = match state {
            Ok(state) => state,
            Err(error) => {
                let result = json!({"exit_code": null, "output": null, "error": error, "truncated": false});
                finish(&mut tx, id, ExecutionStatus::Failed, &result).await?;
                tx.commit().await?;
                return Ok(Pokes { progress: true, ..Pokes::default() });
            }
        };
        let reads = state.reads;
        let mut flow = Flow::new(state.def, state.vars, row.depth.unwrap_or(0));
        flow.tasks = state.tasks;
        flow.items = state.items;
        flow.failed_tasks = row.failed_tasks.unwrap_or(0);
        flow.active = row.active.unwrap_or(0);
        flow.abort_error = row.abort_error;
        let canceling = row.status == ExecutionStatus::Canceling;
        let params = unseal_parameters(&self.ctx.keys.encryption, &row.parameters, row.secret_params.as_deref())
            .unwrap_or(Value::Null);
        let parent = Parent { id, tenant_id: row.tenant_id, canceling, params };
        let actions = self.actions.get(&mut tx, parent.tenant_id, flow.action_refs(), row.definitions_version).await?;
        let items = self.load_items(&mut tx, parent.tenant_id, &reads).await?;
        let cx = Context::new(&self.env, &actions, parent.id, &parent.params, items.as_ref());
        let before = (flow.active, flow.abort_error.is_some());
        let tasks_before = flow.tasks.clone();
        if canceling {
            flow.abort("canceled".into());
        } else if let Some(seconds) = row.timed_out {
            flow.abort(format!("the workflow timed out after {seconds} s (its timeout_seconds)"));
        }
        for e in ended {
            let Some(task) = e.task else { continue };
            let result = e.result.unwrap_or(Value::Null);
            flow.child_ended(&cx, Ended { task, item_index: e.item_index, status: e.status, result });
        }
        flow.resume(&cx);
        let changed = consumed || !flow.created.is_empty() || before != (flow.active, flow.abort_error.is_some());
        let (mut pokes, version) =
            self.apply(&mut tx, &parent, &mut flow, &cx, &actions, Save::ChangedSince(&tasks_before)).await?;
        handoff::commit_and_hand(&self.ctx.pool, tx, std::mem::take(&mut pokes.handed)).await?;
        if let Some(version) = version {
            self.states.put(id, saved(version, flow, reads));
        }
        pokes.progress |= changed;
        Ok(pokes)
    }

    /// Writes a step's decisions: new children, cancels, the state (as `save` says), and
    /// the end. Returns the state's new version, None when the workflow ended.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        parent: &Parent,
        flow: &mut Flow,
        cx: &Context<'_>,
        actions: &Actions,
        save: Save<'_>,
    ) -> Result<(Pokes, Option<i64>), sqlx::Error> {
        let mut pokes = Pokes::default();
        let created = std::mem::take(&mut flow.created);
        if !created.is_empty() {
            (pokes.scheduled, pokes.handed) = self.insert_children(tx, parent, &created, actions).await?;
            pokes.progress = true;
        }
        if flow.cancel {
            let reason = format!("canceled: workflow {} {}", parent.id, flow.abort_error.as_deref().unwrap_or(""));
            let n = sqlx::query_file_scalar!("../../sql/workflow/cancel_children.sql", parent.id, reason)
                .fetch_one(&mut *tx)
                .await?;
            pokes.cancel = n > 0;
            pokes.progress = true;
        }
        let outcome = flow.outcome(cx, parent.canceling);
        let whole = matches!(save, Save::Whole(_));
        let (definition, tasks) = match save {
            Save::Whole(definition) => (Some(definition), serde_json::to_value(&flow.tasks)),
            Save::ChangedSince(before) => {
                let changed: BTreeMap<&String, &TaskState> =
                    flow.tasks.iter().filter(|(name, state)| before.get(*name) != Some(*state)).collect();
                (None, serde_json::to_value(changed))
            }
        };
        let tasks = tasks.unwrap_or(Value::Null);
        // Also paused while a task waits on a human, running again once none does.
        let saved = sqlx::query_file!(
            "../../sql/workflow/save_state.sql",
            parent.id,
            parent.tenant_id,
            definition,
            tasks,
            Value::Object(flow.vars.clone()),
            flow.failed_tasks,
            flow.depth,
            flow.active,
            flow.abort_error.as_deref(),
            // Sent only when they changed (a new with-items list).
            (whole || flow.items_changed).then(|| Value::Object(flow.items.clone())),
            flow.wants_step,
        )
        .fetch_one(&mut *tx)
        .await?;
        pokes.progress |= saved.synced;
        pokes.again = flow.wants_step || (saved.synced && flow.depth > 0);
        if let Some(outcome) = outcome {
            finish(tx, parent.id, outcome.status, &outcome.result).await?;
            pokes.progress = true;
            // A nested workflow ended: its parent's step.
            pokes.again |= flow.depth > 0;
            return Ok((pokes, None));
        }
        Ok((pokes, Some(saved.version)))
    }

    async fn insert_children(
        &self,
        tx: &mut PgConnection,
        parent: &Parent,
        children: &[super::flow::NewChild],
        actions: &Actions,
    ) -> Result<(Tags, Vec<(Reservation, Claimed)>), sqlx::Error> {
        let mut c = Columns::default();
        // Per element: its runner type when admitted `scheduled`, and the slot kept for it
        // in an idle lane of this process, if any (a task due now: see insert_children.sql).
        let mut scheduled = Vec::with_capacity(children.len());
        let mut kept = Vec::with_capacity(children.len());
        for child in children {
            let Some(action) = actions.get(&child.action_ref) else { continue };
            let mut names = action.secret_names.clone();
            names.extend(child.secret_names.iter().cloned());
            // Admitted here with the scheduler's rules: a stage (and a commit) less per task.
            let terms = ActionTerms {
                action_ref: &child.action_ref,
                runner_type: action.runner_type,
                enabled: action.enabled,
                schema: Some(&action.schema),
                secret_names: &names,
                timeout_seconds: child.timeout_seconds.or(action.timeout_seconds),
                retry: action.retry.as_ref(),
            };
            let admission = admit_rendered(&self.ctx, &terms, child.parameters.clone());
            let admitted = admission.status == ExecutionStatus::Scheduled;
            scheduled.push(admitted.then_some(action.runner_type));
            let here = (admitted && child.delay_seconds <= 0.0).then(|| self.ctx.lanes.reserve(action.runner_type));
            let here = here.flatten();
            c.worker_ids.push(here.as_ref().map(|r| r.worker_id));
            c.worker_names.push(here.as_ref().map(|r| r.worker_name.to_string()));
            kept.push(here);
            c.statuses.push(admission.status);
            c.results.push(admission.result);
            c.max_attempts.push(admission.max_attempts);
            c.tenant_ids.push(parent.tenant_id);
            c.parent_ids.push(parent.id);
            c.action_ids.push(action.id);
            c.action_refs.push(child.action_ref.clone());
            c.runner_types.push(action.runner_type);
            c.parameters.push(admission.parameters);
            c.secret_params.push(admission.secret_params);
            c.tasks.push(child.task.clone());
            c.item_indexes.push(child.item_index);
            c.delays.push(child.delay_seconds);
            c.timeouts.push(admission.timeout_seconds);
        }
        let rows = sqlx::query_file!(
            "../../sql/workflow/insert_children.sql",
            &c.tenant_ids,
            &c.parent_ids,
            &c.action_ids,
            &c.action_refs,
            &c.runner_types as &[RunnerType],
            &c.parameters,
            &c.secret_params as &[Option<Vec<u8>>],
            &c.tasks,
            &c.item_indexes as &[Option<i32>],
            &c.delays,
            &c.timeouts,
            &c.statuses as &[ExecutionStatus],
            &c.results as &[Option<Value>],
            &c.max_attempts,
            &c.worker_ids as &[Option<i64>],
            &c.worker_names as &[Option<String>],
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut handed = Vec::with_capacity(rows.len());
        for row in rows {
            let n = row.n as usize - 1;
            let Some(here) = kept.get_mut(n).and_then(Option::take) else { continue };
            scheduled[n] = None;
            handed.push((here, attune_core::claimed_from_row!(row)));
        }
        // The workers are woken for the tasks left `scheduled` only.
        Ok((Tags::runners(scheduled.into_iter().flatten()), handed))
    }

    /// The tenant's datastore items the definition's templates read (none: no query).
    async fn load_items(
        &self,
        tx: &mut PgConnection,
        tenant_id: i64,
        reads: &DatastoreReads,
    ) -> Result<Option<TemplateItems>, sqlx::Error> {
        if reads.is_empty() {
            return Ok(None);
        }
        let wanted = HashMap::from([(tenant_id, reads.clone())]);
        let mut loaded = load_for_templates(tx, &self.ctx.keys.encryption, &wanted).await?;
        Ok(Some(loaded.remove(&tenant_id).unwrap_or_default()))
    }
}

/// The binds of `insert_children.sql`.
#[derive(Default)]
struct Columns {
    tenant_ids: Vec<i64>,
    parent_ids: Vec<i64>,
    action_ids: Vec<i64>,
    action_refs: Vec<String>,
    runner_types: Vec<RunnerType>,
    parameters: Vec<Value>,
    secret_params: Vec<Option<Vec<u8>>>,
    tasks: Vec<String>,
    item_indexes: Vec<Option<i32>>,
    delays: Vec<f64>,
    timeouts: Vec<i32>,
    statuses: Vec<ExecutionStatus>,
    results: Vec<Option<Value>>,
    max_attempts: Vec<i32>,
    worker_ids: Vec<Option<i64>>,
    worker_names: Vec<Option<String>>,
}

/// The flow of a workflow execution about to start: its action's definition (or the
/// action-level with_items shorthand, whose variables are the parameters), unless it
/// nests too deep.
fn definition(
    action_ref: &str,
    workflow: Option<&Value>,
    with_items: Option<&str>,
    params: &Value,
    depth: i32,
) -> Result<Flow, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "workflow {action_ref} would nest {depth} levels deep, more than the limit of {MAX_DEPTH} (a workflow that runs itself?)"
        ));
    }
    match (workflow, with_items) {
        (Some(raw), _) => {
            let def = WorkflowDef::parse(raw).map_err(|e| format!("action {action_ref}: {e}"))?;
            Ok(Flow::new(def, Map::new(), depth))
        }
        (None, Some(items)) => {
            let def = with_items_shorthand(action_ref, items, params);
            Ok(Flow::new(def, object(Some(params.clone())), depth))
        }
        (None, None) => Err(format!("action {action_ref} has no workflow definition")),
    }
}

async fn load_actions(tx: &mut PgConnection, tenant_id: i64, refs: &[String]) -> Result<Actions, sqlx::Error> {
    let rows = sqlx::query_file!("../../sql/workflow/actions.sql", tenant_id, refs).fetch_all(tx).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let schema = ParamSchema::parse(&r.param_schema);
            let info = ActionInfo {
                id: r.id,
                runner_type: r.runner_type,
                secret_names: r.secret_names,
                enabled: r.enabled,
                schema,
                timeout_seconds: r.timeout_seconds,
                retry: r.retry,
            };
            (r.action_ref, info)
        })
        .collect())
}

async fn finish(tx: &mut PgConnection, id: i64, status: ExecutionStatus, result: &Value) -> Result<(), sqlx::Error> {
    sqlx::query_file!("../../sql/workflow/finish.sql", id, status as ExecutionStatus, result).execute(tx).await?;
    Ok(())
}
