//! What a workflow's templates see and how they are rendered: `execution.params` (plain,
//! secrets unsealed), `execution.id`, `datastore.*`/`secret.*` (the tenant's items the
//! definition reads, loaded once per step), plus what [`super::flow::Flow`] adds
//! (published variables, `task_NAME.result`, `tasks.NAME.result`, `item`, `item_index`,
//! `result`). Values that are exactly one `{{ expr }}` keep their JSON type.

use attune_core::datastore::TemplateItems;
use attune_core::domain::templates::{eval_criteria, render_value, DATASTORE, SECRET};
use minijinja::Environment;
use serde_json::{json, Map, Value};

use super::flow::{ActionInfo, Actions};

/// The fixed part of a workflow step's template context.
pub struct Context<'a> {
    env: &'a Environment<'static>,
    actions: &'a Actions,
    execution_id: i64,
    params: &'a Value,
    items: Option<&'a TemplateItems>,
}

impl<'a> Context<'a> {
    pub fn new(
        env: &'a Environment<'static>,
        actions: &'a Actions,
        execution_id: i64,
        params: &'a Value,
        items: Option<&'a TemplateItems>,
    ) -> Context<'a> {
        Context { env, actions, execution_id, params, items }
    }

    pub fn action(&self, action_ref: &str) -> Option<&ActionInfo> {
        self.actions.get(action_ref)
    }

    /// Adds `execution`, `datastore` and `secret` to a context map.
    pub fn add_base(&self, map: &mut Map<String, Value>) {
        map.insert("execution".into(), json!({"id": self.execution_id, "params": self.params}));
        let (datastore, secret) = match self.items {
            Some(items) => (Value::Object(items.datastore.clone()), Value::Object(items.secret.clone())),
            None => (json!({}), json!({})),
        };
        map.insert(DATASTORE.into(), datastore);
        map.insert(SECRET.into(), secret);
    }

    /// Renders every template inside `value`; errors name `path`.
    pub fn render(&self, context: &Value, path: &str, value: &Value) -> Result<Value, String> {
        if let Some(items) = self.items {
            if let Some((key, why)) = items.unreadable.iter().next() {
                if value.to_string().contains(key.as_str()) {
                    return Err(format!("{path}: secret {key:?} cannot be read: {why}"));
                }
            }
        }
        render_value(self.env, path, value, context)
    }

    /// A task's `when`: true when the rendered value is truthy.
    pub fn condition(&self, context: &Value, when: &str) -> Result<bool, String> {
        eval_criteria(self.env, when, context)
    }
}
