//! Workflows end to end (issue 10, part 1): definitions validated at save, the engine in
//! the executor (depends_on and next orderings, publish and templates, failure policies,
//! with-items and concurrency, nesting and its depth limit, cancel), over the API with a
//! real database, executor and worker.

use std::collections::HashMap;
use std::time::Duration;

use attune_tests::{eventually, TestApp, User};
use serde_json::{json, Value};

/// A user with an empty pack `wf`.
async fn setup(app: &TestApp, login: &str) -> User {
    let u = app.register(login).await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "wf", "version": "1.0.0"})).await.status, 201);
    u
}

async fn action(app: &TestApp, u: &User, body: Value) {
    let a = app.post(u, "/api/v1/actions", body.clone()).await;
    assert_eq!(a.status, 201, "{body}: {:?}", a.body);
}

/// A workflow action `wf.NAME` with definition `workflow`.
async fn workflow(app: &TestApp, u: &User, name: &str, workflow: Value) {
    action(app, u, json!({"ref": format!("wf.{name}"), "runner_type": "workflow", "workflow": workflow})).await;
}

/// Runs `action` by hand and waits for its end.
async fn run(app: &TestApp, u: &User, action: &str, parameters: Value) -> Value {
    let r = app.post(u, "/api/v1/executions", json!({"action": action, "parameters": parameters})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    app.finished_execution(u, r.body["id"].as_i64().unwrap()).await
}

/// The direct children of an execution, oldest first.
async fn children(app: &TestApp, u: &User, id: i64) -> Vec<Value> {
    let page = app.get(u, &format!("/api/v1/executions/{id}/children?limit=1000")).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let mut list = page.body["data"].as_array().unwrap().clone();
    list.sort_by_key(|c| c["id"].as_i64());
    list
}

/// Children by task name (from the database: the API's view has no task column yet).
async fn tasks_of(app: &TestApp, id: i64) -> Vec<(String, String)> {
    sqlx::query_as("SELECT workflow_task, status FROM attune.execution WHERE parent_id = $1 ORDER BY id")
        .bind(id)
        .fetch_all(app.pool())
        .await
        .unwrap()
}

fn stamp(v: &Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    v[field].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{field} of {v}"))
}

fn id(v: &Value) -> i64 {
    v["id"].as_i64().unwrap()
}

const ITEM_CODE: &str = "import time\ndef run(params):\n    time.sleep(0.5)\n    return {'item': params['item'], 'index': params['item_index']}\n";

#[tokio::test]
async fn t1_5_with_items_action_runs_one_child_per_item() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "t15").await;
    action(
        &app,
        &u,
        json!({
            "ref": "wf.process_items", "runner_type": "python3", "code": ITEM_CODE,
            "parameters": {"items": {"type": "array", "required": true}},
            "with_items": "{{ items }}"
        }),
    )
    .await;
    let r = app
        .post(
            &u,
            "/api/v1/executions",
            json!({"action": "wf.process_items", "parameters": {"items": ["apple", "banana", "cherry"]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let parent_id = id(&r.body);
    eventually("the parent to run while its items do", Duration::from_secs(30), || async {
        let p = app.get(&u, &format!("/api/v1/executions/{parent_id}")).await;
        (p.body["status"] == "running" && !children(&app, &u, parent_id).await.is_empty()).then_some(())
    })
    .await;
    let parent = app.finished_execution(&u, parent_id).await;
    assert_eq!(parent["status"], "succeeded", "{parent}");
    let kids = children(&app, &u, parent_id).await;
    assert_eq!(kids.len(), 3, "{kids:?}");
    let mut seen: Vec<(String, i64)> = kids
        .iter()
        .map(|k| {
            assert_eq!(k["parent_id"], parent_id);
            assert_eq!(k["status"], "succeeded", "{k}");
            assert_eq!(k["parameters"]["items"], json!(["apple", "banana", "cherry"]), "the parent's parameters");
            (
                k["result"]["output"]["item"].as_str().unwrap().to_string(),
                k["result"]["output"]["index"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, [("apple".into(), 0), ("banana".into(), 1), ("cherry".into(), 2)]);
    // Children can run in parallel: no limit was given, all three overlap.
    let last_start = kids.iter().map(|k| stamp(k, "started_at")).max().unwrap();
    let first_end = kids.iter().map(|k| stamp(k, "finished_at")).min().unwrap();
    assert!(last_start < first_end, "the items ran at the same time");
    assert_eq!(parent["result"]["output"].as_array().map(Vec::len), Some(3), "{parent}");

    // Through a rule, as the test plan has it: the rule's execution is the parent.
    let hook = app.post(&u, "/api/v1/triggers", json!({"ref": "wf.items_hook", "type": "webhook"})).await;
    let rule = json!({"ref": "wf.on_items", "trigger": "wf.items_hook", "action": "wf.process_items",
                      "action_params": {"items": "{{ trigger.data.fruit }}"}});
    assert_eq!(app.post(&u, "/api/v1/rules", rule).await.status, 201);
    app.fire(hook.body["webhook_url"].as_str().unwrap(), json!({"fruit": ["kiwi", "lime"]})).await;
    let parent = eventually("the rule's parent execution", Duration::from_secs(30), || async {
        let list = app.get(&u, "/api/v1/executions?action=wf.process_items").await;
        list.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["rule_ref"] == "wf.on_items" && e["parent_id"].is_null())
            .cloned()
    })
    .await;
    let parent = app.finished_execution(&u, id(&parent)).await;
    assert_eq!(parent["status"], "succeeded", "{parent}");
    let items: Vec<Value> =
        children(&app, &u, id(&parent)).await.iter().map(|k| k["parameters"]["item"].clone()).collect();
    assert_eq!(items, [json!("kiwi"), json!("lime")]);

    // As a workflow's task: the task's execution is the parent of the items.
    let mix = json!({"tasks": [{"name": "mix", "action": "wf.process_items", "input": {"items": ["fig", "plum"]}}]});
    workflow(&app, &u, "fruit_salad", mix).await;
    let flow = run(&app, &u, "wf.fruit_salad", json!({})).await;
    assert_eq!(flow["status"], "succeeded", "{flow}");
    let task = children(&app, &u, id(&flow)).await;
    assert_eq!(task.len(), 1, "{task:?}");
    let items: Vec<Value> =
        children(&app, &u, id(&task[0])).await.iter().map(|k| k["parameters"]["item"].clone()).collect();
    assert_eq!(items, [json!("fig"), json!("plum")]);
}

#[tokio::test]
async fn t1_5_pack_directory_workflow_iterates() {
    // tests/fixtures/packs/test_pack: `workflow: process_items` names workflows/process_items.yaml.
    let packs = attune_tests::fixture_pack("test_pack").parent().unwrap().to_path_buf();
    let app = TestApp::spawn_pipeline_with(|c| c.packs.dirs = vec![packs]).await;
    let u = app.register("t15_pack").await;
    let ex = run(&app, &u, "test_pack.process_items", json!({"items": ["x", "y", "z"]})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let kids = children(&app, &u, id(&ex)).await;
    let said: Vec<&str> = kids.iter().map(|k| k["result"]["output"]["message"].as_str().unwrap()).collect();
    assert_eq!(said, ["x", "y", "z"], "{kids:?}");
}

#[tokio::test]
async fn t2_1_nested_workflow_three_levels() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "t21").await;
    workflow(
        &app,
        &u,
        "child",
        json!({
            "input": ["name"],
            "tasks": [
                {"name": "one", "action": "core.echo", "input": {"message": "hello {{ execution.params.name }}"},
                 "publish": {"greeting": "{{ result.output.message }}"}},
                {"name": "two", "action": "core.echo", "depends_on": ["one"], "input": {"message": "{{ greeting }}!"}}
            ],
            "output": {"said": "{{ task_two.result.output.message }}"}
        }),
    )
    .await;
    workflow(
        &app,
        &u,
        "parent",
        json!({
            "tasks": [{"name": "sub", "action": "wf.child", "input": {"name": "{{ execution.params.who }}"}}],
            "output": {"from_child": "{{ task_sub.result.output.said }}"}
        }),
    )
    .await;
    let top = run(&app, &u, "wf.parent", json!({"who": "ada"})).await;
    assert_eq!(top["status"], "succeeded", "{top}");
    assert_eq!(top["result"]["output"], json!({"from_child": "hello ada!"}), "results propagate up");
    let level2 = children(&app, &u, id(&top)).await;
    assert_eq!(level2.len(), 1);
    assert_eq!(level2[0]["action_ref"], "wf.child");
    assert_eq!(level2[0]["parent_id"], id(&top));
    let level3 = children(&app, &u, id(&level2[0])).await;
    assert_eq!(level3.len(), 2);
    assert!(level3.iter().all(|t| t["parent_id"] == level2[0]["id"] && t["status"] == "succeeded"));
    assert!(stamp(&top, "finished_at") >= stamp(&level2[0], "finished_at"), "the parent waits for its descendants");
    // The tree view: every descendant, oldest first, with its depth and task.
    let tree = app.get(&u, &format!("/api/v1/executions/{}/children?depth=all", id(&top))).await;
    assert_eq!(tree.status, 200, "{:?}", tree.body);
    assert_eq!(tree.body["total"], 3);
    let shape: Vec<(i64, &str)> = tree.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["depth"].as_i64().unwrap(), e["workflow_task"].as_str().unwrap()))
        .collect();
    assert_eq!(shape, [(1, "sub"), (2, "one"), (2, "two")]);
    assert_eq!(app.get(&u, &format!("/api/v1/executions/{}/children?depth=7", id(&top))).await.status, 400);

    // A workflow that runs itself stops at the depth limit, with a clear error.
    workflow(&app, &u, "forever", json!({"tasks": [{"name": "again", "action": "wf.forever"}]})).await;
    let ex = run(&app, &u, "wf.forever", json!({})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    let error = ex["result"]["error"].as_str().unwrap();
    assert!(error.contains("more than the limit of 10"), "{error}");
}

/// `a` (noop) → `b` (fails) → `c` (noop) with `b`'s policy `policy`.
fn three(policy: &str) -> Value {
    json!({"tasks": [
        {"name": "a", "action": "core.noop"},
        {"name": "b", "action": "core.fail", "depends_on": ["a"], "on_failure": policy},
        {"name": "c", "action": "core.noop", "depends_on": ["b"]}
    ]})
}

#[tokio::test]
async fn t2_2_failure_policies() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "t22").await;

    workflow(&app, &u, "abort", three("abort")).await;
    let ex = run(&app, &u, "wf.abort", json!({})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    assert!(ex["result"]["error"].as_str().unwrap().contains("task b failed"), "{ex}");
    assert_eq!(tasks_of(&app, id(&ex)).await, [("a".into(), "succeeded".into()), ("b".into(), "failed".into())]);

    workflow(&app, &u, "cont", three("continue")).await;
    let ex = run(&app, &u, "wf.cont", json!({})).await;
    assert_eq!(ex["status"], "succeeded_with_errors", "{ex}");
    let ran = tasks_of(&app, id(&ex)).await;
    assert_eq!(
        ran,
        [("a".into(), "succeeded".into()), ("b".into(), "failed".into()), ("c".into(), "succeeded".into())]
    );

    // Retry recovers: the action fails on its first run only.
    let flaky = "from attune import datastore\ndef run(params):\n    n = (datastore.get('tries') or 0) + 1\n    datastore.set('tries', n)\n    if n < 2:\n        raise Exception('first try fails')\n    return {'tries': n}\n";
    action(&app, &u, json!({"ref": "wf.flaky", "runner_type": "python", "code": flaky})).await;
    workflow(
        &app,
        &u,
        "recovers",
        json!({"tasks": [
        {"name": "f", "action": "wf.flaky", "on_failure": "retry", "publish": {"tries": "{{ result.output.tries }}"}}
    ], "output": {"tries": "{{ tries }}"}}),
    )
    .await;
    let ex = run(&app, &u, "wf.recovers", json!({})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["output"]["tries"], 2, "{ex}");
    assert_eq!(tasks_of(&app, id(&ex)).await, [("f".into(), "failed".into()), ("f".into(), "succeeded".into())]);

    // Retry exhausted: the task's retry block, then abort.
    workflow(
        &app,
        &u,
        "exhausted",
        json!({"tasks": [
            {"name": "f", "action": "core.fail", "on_failure": "retry", "retry": {"max_attempts": 2}},
            {"name": "after", "action": "core.noop", "depends_on": ["f"]}
        ]}),
    )
    .await;
    let ex = run(&app, &u, "wf.exhausted", json!({})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(tasks_of(&app, id(&ex)).await, [("f".into(), "failed".into()), ("f".into(), "failed".into())]);

    // A failure handled by next.failure / next.complete triggers no policy.
    workflow(
        &app,
        &u,
        "handled",
        json!({"tasks": [
            {"name": "f", "action": "core.fail", "next": {"failure": ["on_fail"], "success": ["never"]}},
            {"name": "on_fail", "action": "core.echo", "input": {"message": "{{ task_f.result.error }}"},
             "next": {"complete": ["always"]}},
            {"name": "never", "action": "core.noop"},
            {"name": "always", "action": "core.fail", "next": {"complete": ["last"]}},
            {"name": "last", "action": "core.noop"}
        ]}),
    )
    .await;
    let ex = run(&app, &u, "wf.handled", json!({})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let ran: Vec<String> = tasks_of(&app, id(&ex)).await.into_iter().map(|(t, _)| t).collect();
    assert_eq!(ran, ["f", "on_fail", "always", "last"]);
}

#[tokio::test]
async fn t2_3_action_writes_then_next_reads_the_datastore() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "t23").await;
    let writer = "from attune import datastore\ndef run(params):\n    datastore.set('config.api_url', params['url'])\n    return {'wrote': params['url']}\n";
    let reader =
        "from attune import datastore\ndef run(params):\n    return {'url': datastore.get('config.api_url')}\n";
    action(
        &app,
        &u,
        json!({"ref": "wf.write", "runner_type": "python", "code": writer,
                             "parameters": {"url": {"type": "string", "required": true}}}),
    )
    .await;
    action(&app, &u, json!({"ref": "wf.read", "runner_type": "python", "code": reader})).await;
    workflow(
        &app,
        &u,
        "kv",
        json!({"tasks": [
        {"name": "a", "action": "wf.write", "input": {"url": "{{ execution.params.url }}"}, "next": {"success": ["b"]}},
        {"name": "b", "action": "wf.read"}
    ], "output": {"read": "{{ task_b.result.output.url }}", "template_read": "{{ datastore['config.api_url'] }}"}}),
    )
    .await;
    let ex = run(&app, &u, "wf.kv", json!({"url": "https://api.production.com"})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["output"]["read"], "https://api.production.com", "{ex}");
    assert_eq!(ex["result"]["output"]["template_read"], "https://api.production.com", "{ex}");
    let stored: Value =
        sqlx::query_scalar("SELECT value FROM attune.datastore_item WHERE key = 'config.api_url' AND tenant_id = $1")
            .bind(u.tenant_id)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!(stored, json!("https://api.production.com"));
}

#[tokio::test]
async fn t2_4_templating_context() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "t24").await;
    let structured = "def run(params):\n    return {'api_key': 'k-123', 'n': 42, 'user': {'email': 'a@b.c'}}\n";
    action(&app, &u, json!({"ref": "wf.structured", "runner_type": "python", "code": structured})).await;
    let show = "def run(params):\n    return params\n";
    action(&app, &u, json!({"ref": "wf.show", "runner_type": "python", "code": show})).await;
    assert_eq!(app.post(&u, "/api/v1/datastore", json!({"key": "region", "value": "eu-1"})).await.status / 100, 2);
    workflow(
        &app,
        &u,
        "ctx",
        json!({"tasks": [
            {"name": "task_1", "action": "wf.structured", "next": {"success": ["use"]}},
            {"name": "use", "action": "wf.show", "input": {
                "key": "{{ task_task_1.result.output.api_key }}",
                "n": "{{ tasks.task_1.result.output.n }}",
                "email": "{{ task_task_1.result.output.user.email }}",
                "param": "{{ execution.params.p }}",
                "region": "{{ datastore.region }}",
                "missing": "{{ task_task_1.result.output.nope }}",
                "mixed": "n={{ tasks.task_1.result.output.n }}"
            }}
        ]}),
    )
    .await;
    let ex = run(&app, &u, "wf.ctx", json!({"p": [1, 2]})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let used = &children(&app, &u, id(&ex)).await[1];
    assert_eq!(
        used["result"]["output"],
        json!({"key": "k-123", "n": 42, "email": "a@b.c", "param": [1, 2], "region": "eu-1", "missing": null, "mixed": "n=42"}),
        "{used}"
    );

    // A template error fails the task, naming the task and the template.
    workflow(
        &app,
        &u,
        "broken",
        json!({"tasks": [
            {"name": "bad", "action": "core.echo", "input": {"message": "{{ execution.params.x | nosuchfilter }}"}}
        ]}),
    )
    .await;
    let ex = run(&app, &u, "wf.broken", json!({"x": 1})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    let error = ex["result"]["error"].as_str().unwrap();
    assert!(error.contains("task bad") && error.contains("nosuchfilter"), "{error}");
}

#[tokio::test]
async fn t2_10_parallel_with_items() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "t210").await;
    for (name, concurrency) in [("all", Value::Null), ("five", json!(5)), ("one", json!(1)), ("three", json!(3))] {
        let mut task = json!({"name": "each", "action": "core.sleep", "with_items": "{{ execution.params.xs }}",
                              "input": {"seconds": "{{ item }}"}});
        if !concurrency.is_null() {
            task["concurrency"] = concurrency;
        }
        workflow(&app, &u, name, json!({"tasks": [task]})).await;
    }
    let xs = json!([1, 1, 1, 1, 1]);
    for name in ["all", "five"] {
        let ex = run(&app, &u, &format!("wf.{name}"), json!({"xs": xs})).await;
        assert_eq!(ex["status"], "succeeded", "{ex}");
        let kids = children(&app, &u, id(&ex)).await;
        assert_eq!(kids.len(), 5);
        let last_start = kids.iter().map(|k| stamp(k, "started_at")).max().unwrap();
        let first_end = kids.iter().map(|k| stamp(k, "finished_at")).min().unwrap();
        assert!(last_start < first_end, "{name}: all five ran at once");
    }
    let xs = json!([0.3, 0.3, 0.3, 0.3, 0.3]);
    for (name, limit) in [("one", 1), ("three", 3)] {
        let ex = run(&app, &u, &format!("wf.{name}"), json!({"xs": xs})).await;
        assert_eq!(ex["status"], "succeeded", "{ex}");
        let kids = children(&app, &u, id(&ex)).await;
        assert_eq!(kids.len(), 5);
        // At no child's start were more than `limit` running.
        for k in &kids {
            let t = stamp(k, "started_at");
            let running = kids.iter().filter(|o| stamp(o, "started_at") <= t && stamp(o, "finished_at") > t).count();
            assert!(running <= limit, "{name}: {running} ran at once");
        }
    }
}

#[tokio::test]
async fn t2_11_sequential_dependencies() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "t211").await;
    let step = "def run(params):\n    return {'step': params['step'], 'previous': params.get('previous')}\n";
    action(&app, &u, json!({"ref": "wf.step", "runner_type": "python", "code": step})).await;
    // Listed out of order; depends_on form.
    workflow(
        &app,
        &u,
        "deps",
        json!({"tasks": [
            {"name": "task_c", "action": "wf.step", "depends_on": ["task_b"],
             "input": {"step": 3, "previous": "{{ task_task_b.result.output.step }}"}},
            {"name": "task_a", "action": "wf.step", "input": {"step": 1}},
            {"name": "task_b", "action": "wf.step", "depends_on": ["task_a"],
             "input": {"step": 2, "previous": "{{ task_task_a.result.output.step }}"}}
        ]}),
    )
    .await;
    // The same chain through next transitions, also out of order.
    workflow(&app, &u, "next", json!({"tasks": [
        {"name": "task_b", "action": "wf.step", "input": {"step": 2, "previous": "{{ task_task_a.result.output.step }}"},
         "next": {"success": ["task_c"]}},
        {"name": "task_c", "action": "wf.step", "input": {"step": 3, "previous": "{{ task_task_b.result.output.step }}"}},
        {"name": "task_a", "action": "wf.step", "input": {"step": 1}, "next": {"success": ["task_b"]}}
    ]}))
    .await;
    for name in ["deps", "next"] {
        let ex = run(&app, &u, &format!("wf.{name}"), json!({})).await;
        assert_eq!(ex["status"], "succeeded", "{name}: {ex}");
        let kids = children(&app, &u, id(&ex)).await;
        let order: Vec<(i64, Value)> = kids
            .iter()
            .map(|k| (k["result"]["output"]["step"].as_i64().unwrap(), k["result"]["output"]["previous"].clone()))
            .collect();
        assert_eq!(order, [(1, Value::Null), (2, json!(1)), (3, json!(2))], "{name}");
        for pair in kids.windows(2) {
            assert!(stamp(&pair[1], "started_at") >= stamp(&pair[0], "finished_at"), "{name}: no task starts early");
        }
    }
}

#[tokio::test]
async fn invalid_workflows_are_refused_naming_the_task_and_field() {
    let app = TestApp::spawn().await;
    let u = setup(&app, "wfbad").await;
    let cases = [
        (
            json!([{"name": "a", "action": "core.noop", "next": {"success": ["ghost"]}}]),
            vec!["(a).next.success", "ghost"],
        ),
        (json!([{"name": "a", "action": "core.noop", "depends_on": ["ghost"]}]), vec!["(a).depends_on", "ghost"]),
        (
            json!([{"name": "a", "action": "core.noop"}, {"name": "a", "action": "core.noop"}]),
            vec!["duplicate task name"],
        ),
        (
            json!([{"name": "s", "action": "core.noop"},
                   {"name": "a", "action": "core.noop", "depends_on": ["s", "b"]},
                   {"name": "b", "action": "core.noop", "depends_on": ["a"]}]),
            vec!["cycle", "a -> b -> a"],
        ),
        (
            json!([{"name": "a", "action": "core.noop", "next": {"success": ["b"]}},
                   {"name": "b", "action": "core.noop", "depends_on": ["a"]}]),
            vec!["(b).depends_on", "next transition"],
        ),
        (json!([{"name": "a", "action": "core.noop", "on_failure": "explode"}]), vec!["(a)", "explode"]),
        (json!([{"name": "a", "action": "ghost.act"}]), vec!["(a).action", "ghost.act", "does not exist"]),
        (
            json!([{"name": "a", "action": "core.noop", "input": {"m": "{{ broken("}}]),
            vec!["(a).input.m", "syntax error"],
        ),
    ];
    for (i, (tasks, says)) in cases.into_iter().enumerate() {
        let body = json!({"ref": format!("wf.bad{i}"), "runner_type": "workflow", "workflow": {"tasks": tasks}});
        let a = app.post(&u, "/api/v1/actions", body).await;
        assert!(a.status == 422 || a.status == 400, "case {i}: {:?}", a.body);
        let text = a.body.to_string();
        for s in says {
            assert!(text.contains(s), "case {i}: {s:?} in {text}");
        }
    }
}

#[tokio::test]
async fn simultaneous_completions_never_start_a_task_twice() {
    let app = TestApp::spawn_pipeline().await;
    // Three executors and two workers race on the same workflows.
    app.start_executor();
    app.start_executor();
    app.start_worker();
    let u = setup(&app, "wfrace").await;
    let mut tasks: Vec<Value> = (0..20)
        .map(|i| json!({"name": format!("p{i}"), "action": "core.noop", "next": {"complete": ["joined"]}}))
        .collect();
    tasks.push(json!({"name": "joined", "action": "core.noop"}));
    tasks.push(json!({"name": "after_all", "action": "core.noop",
                      "depends_on": (0..20).map(|i| format!("p{i}")).collect::<Vec<_>>()}));
    workflow(&app, &u, "fan", json!({"tasks": tasks})).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = app.post(&u, "/api/v1/executions", json!({"action": "wf.fan"})).await;
        ids.push(id(&r.body));
    }
    for wf in ids {
        let ex = app.finished_execution(&u, wf).await;
        assert_eq!(ex["status"], "succeeded", "{ex}");
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (task, status) in tasks_of(&app, wf).await {
            assert_eq!(status, "succeeded");
            *counts.entry(task).or_default() += 1;
        }
        assert_eq!(counts.len(), 22, "every task ran: {counts:?}");
        assert!(counts.values().all(|&n| n == 1), "no task ran twice: {counts:?}");
    }
}

/// Each engine keeps the state it saved of the workflows it stepped and writes back only
/// the task states that changed; with three executors taking turns on one workflow, a step
/// often finds the state saved by another engine. Every step must then work from the stored
/// state: a chain of 16 tasks, each adding one to the variable the previous one published,
/// ends with 16, every task ran once, and the stored task states are all there.
#[tokio::test]
async fn executors_taking_turns_on_a_workflow_carry_its_whole_state() {
    let app = TestApp::spawn_pipeline().await;
    app.start_executor();
    app.start_executor();
    let u = setup(&app, "wfturns").await;
    let add = "def run(params):\n    return {'n': params['n'] + 1}\n";
    action(&app, &u, json!({"ref": "wf.add", "runner_type": "python", "code": add})).await;
    let tasks: Vec<Value> = (0..16)
        .map(|i| {
            let mut task = json!({"name": format!("s{i:02}"), "action": "wf.add",
                                  "input": {"n": if i == 0 { "{{ execution.params.start }}" } else { "{{ n }}" }},
                                  "publish": {"n": "{{ result.output.n }}"}});
            if i > 0 {
                task["depends_on"] = json!([format!("s{:02}", i - 1)]);
            }
            task
        })
        .collect();
    workflow(&app, &u, "turns", json!({"tasks": tasks, "output": {"n": "{{ n }}"}})).await;
    for round in 0..3 {
        let ex = run(&app, &u, "wf.turns", json!({"start": round * 100})).await;
        assert_eq!(ex["status"], "succeeded", "{ex}");
        assert_eq!(ex["result"]["output"], json!({"n": round * 100 + 16}), "{ex}");
        let ran = tasks_of(&app, id(&ex)).await;
        assert_eq!(ran.len(), 16, "each task once: {ran:?}");
        let states: Value = sqlx::query_scalar("SELECT tasks FROM attune.workflow_state WHERE execution_id = $1")
            .bind(id(&ex))
            .fetch_one(app.pool())
            .await
            .unwrap();
        let states = states.as_object().unwrap();
        assert_eq!(states.len(), 16, "every task's state stored: {states:?}");
        assert!(states.values().all(|t| t["status"] == "succeeded"), "{states:?}");
        assert_eq!(states["s15"]["result"]["output"], json!({"n": round * 100 + 16}));
    }
}

#[tokio::test]
async fn with_items_over_many_items_runs_each_once_in_batches() {
    let app = TestApp::spawn_pipeline().await;
    app.start_executor();
    let u = setup(&app, "wfmany").await;
    // More items than one step creates (flow::BATCH = 500): later batches follow.
    workflow(&app, &u, "many", json!({"tasks": [
        {"name": "each", "action": "core.echo", "with_items": "{{ range(1200) | list }}", "input": {"message": "item {{ item }}"}},
        {"name": "then", "action": "core.noop", "depends_on": ["each"]}
    ]}))
    .await;
    let ex = run(&app, &u, "wf.many", json!({})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let (n, distinct, max_index): (i64, i64, Option<i32>) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT item_index), max(item_index) FROM attune.execution WHERE parent_id = $1 AND workflow_task = 'each'",
    )
    .bind(id(&ex))
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!((n, distinct, max_index), (1200, 1200, Some(1199)), "every item exactly once");
    assert_eq!(tasks_of(&app, id(&ex)).await.last().unwrap().0, "then");
}

#[tokio::test]
async fn a_workflow_past_its_timeout_fails_and_cancels_its_tasks() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "wftimeout").await;
    let body = json!({"ref": "wf.bounded", "runner_type": "workflow", "timeout_seconds": 2,
                      "workflow": {"tasks": [{"name": "wait", "action": "core.sleep", "input": {"seconds": 30}}]}});
    action(&app, &u, body).await;
    let ex = run(&app, &u, "wf.bounded", json!({})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    assert!(ex["result"]["error"].as_str().unwrap().contains("timed out after 2 s"), "{ex}");
    assert!(stamp(&ex, "finished_at") - stamp(&ex, "started_at") < chrono::Duration::seconds(20));
    assert_eq!(tasks_of(&app, id(&ex)).await, [("wait".into(), "canceled".into())]);
}

/// The first example of docs/workflows.md, as written there.
#[tokio::test]
async fn the_documented_example_runs() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("wfdocs").await;
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "demo", "version": "1"})).await.status, 201);
    let doc = std::fs::read_to_string(attune_tests::workspace_root().join("docs/workflows.md")).unwrap();
    let example = doc.split("```json\n").nth(1).and_then(|b| b.split("```").next()).unwrap();
    let body: Value = serde_json::from_str(example).unwrap();
    action(&app, &u, body).await;
    let ex = run(&app, &u, "demo.greet_all", json!({"names": ["ada", "grace", "linus"]})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["output"], json!({"greeted": 3}));
    let said: Vec<Value> =
        children(&app, &u, id(&ex)).await.iter().map(|k| k["result"]["output"]["message"].clone()).collect();
    assert_eq!(
        said,
        [json!("3 names"), json!("hello ada (1 of 3)"), json!("hello grace (2 of 3)"), json!("hello linus (3 of 3)")]
    );
}

#[tokio::test]
async fn canceling_a_workflow_cancels_its_tasks() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "wfcancel").await;
    workflow(
        &app,
        &u,
        "slow",
        json!({"tasks": [
            {"name": "wait", "action": "core.sleep", "input": {"seconds": 30}},
            {"name": "never", "action": "core.noop", "depends_on": ["wait"]}
        ]}),
    )
    .await;
    let r = app.post(&u, "/api/v1/executions", json!({"action": "wf.slow"})).await;
    let wf = id(&r.body);
    eventually("the task to run", Duration::from_secs(30), || async {
        let kids = children(&app, &u, wf).await;
        kids.first().is_some_and(|k| k["status"] == "running").then_some(())
    })
    .await;
    assert_eq!(app.post(&u, &format!("/api/v1/executions/{wf}/cancel"), json!({})).await.status, 202);
    let ex = app.finished_execution(&u, wf).await;
    assert_eq!(ex["status"], "canceled", "{ex}");
    assert_eq!(tasks_of(&app, wf).await, [("wait".into(), "canceled".into())]);
}

#[test]
fn a_pack_with_an_invalid_workflow_file_is_rejected_naming_file_task_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for sub in ["actions", "workflows"] {
        std::fs::create_dir_all(p.join(sub)).unwrap();
    }
    std::fs::write(p.join("pack.yaml"), "ref: wfpack\nversion: 1.0.0\n").unwrap();
    std::fs::write(p.join("actions/flow.yaml"), "name: flow\nrunner_type: workflow\nworkflow: flow\n").unwrap();
    std::fs::write(
        p.join("workflows/flow.yaml"),
        "tasks:\n  - name: a\n    action: core.noop\n    next: {success: [b]}\n  - name: b\n    action: core.noop\n    next: {failure: [ghost]}\n",
    )
    .unwrap();
    let err = attune_core::pack::loader::load(p).expect_err("the pack is refused").to_string();
    for needle in ["workflows/flow.yaml", "workflow.tasks[1] (b).next.failure", "unknown task \"ghost\""] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
}

/// An executor whose connections are cut in the middle of a with-items workflow (and which
/// then stops, as a crashed one would): another executor finishes the workflow, and every
/// item runs exactly once.
#[tokio::test]
async fn an_executor_cut_off_mid_with_items_is_replaced_and_every_item_runs_once() {
    let app = TestApp::spawn().await;
    app.start_worker();
    let u = setup(&app, "wfcut").await;
    workflow(
        &app,
        &u,
        "cut",
        json!({"tasks": [
            {"name": "each", "action": "core.sleep", "with_items": "{{ range(40) | list }}", "concurrency": 5,
             "input": {"seconds": 0.2}}
        ]}),
    )
    .await;
    // Executor A, on a pool of its own that can be told apart in pg_stat_activity.
    let options = app.db.connect_options().application_name("executor-a");
    let pool = attune_core::db::connect_with(options, 10).await.unwrap();
    let stop_a = app.shutdown.child_token();
    tokio::spawn(attune_executor::run(app.ctx.with_pool(pool.clone()), stop_a.clone()));
    let r = app.post(&u, "/api/v1/executions", json!({"action": "wf.cut"})).await;
    let wf = id(&r.body);
    eventually("some items to have run", Duration::from_secs(30), || async {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM attune.execution WHERE parent_id = $1 AND status = 'succeeded'")
                .bind(wf)
                .fetch_one(app.pool())
                .await
                .unwrap();
        (done >= 8).then_some(())
    })
    .await;
    stop_a.cancel();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'executor-a'")
        .execute(app.pool())
        .await
        .unwrap();
    pool.close().await;
    app.start_executor();
    let ex = app.finished_execution(&u, wf).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let (n, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT item_index) FROM attune.execution WHERE parent_id = $1")
            .bind(wf)
            .fetch_one(app.pool())
            .await
            .unwrap();
    assert_eq!((n, distinct), (40, 40), "every item exactly once");
}

/// T3.25: a workflow of 100 sequential tasks, each `core.echo` with its number: every task
/// runs once, in order (each starts after the previous finished), with its own output, and
/// the tree view shows the 100 children under the workflow.
#[tokio::test]
async fn t3_25_large_workflow_hundred_sequential_tasks() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "t325").await;
    let tasks: Vec<Value> = (1..=100)
        .map(|i| {
            let mut task =
                json!({"name": format!("t{i}"), "action": "core.echo", "input": {"message": format!("task {i}")}});
            if i > 1 {
                task["depends_on"] = json!([format!("t{}", i - 1)]);
            }
            task
        })
        .collect();
    workflow(&app, &u, "hundred", json!({"tasks": tasks})).await;
    let ex = run(&app, &u, "wf.hundred", json!({})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");

    let mut kids = children(&app, &u, id(&ex)).await;
    assert_eq!(kids.len(), 100, "{kids:?}");
    kids.sort_by_key(|k| stamp(k, "started_at"));
    for (i, k) in (1..=100).zip(&kids) {
        assert_eq!(k["workflow_task"], format!("t{i}"), "started in task order: {k}");
        assert_eq!(k["status"], "succeeded", "{k}");
        assert_eq!(k["parent_id"], id(&ex), "{k}");
        assert_eq!(k["result"]["output"]["message"], format!("task {i}"), "{k}");
    }
    for pair in kids.windows(2) {
        assert!(
            stamp(&pair[1], "started_at") >= stamp(&pair[0], "finished_at"),
            "{} started before {} finished",
            pair[1]["workflow_task"],
            pair[0]["workflow_task"]
        );
    }
    assert!(stamp(&ex, "finished_at") >= stamp(&kids[99], "finished_at"), "the workflow ends after its last task");

    let tree = app.get(&u, &format!("/api/v1/executions/{}/children?depth=all&limit=1000", id(&ex))).await;
    assert_eq!(tree.status, 200, "{:?}", tree.body);
    assert_eq!(tree.body["total"], 100, "{:?}", tree.body);
    let entries = tree.body["data"].as_array().unwrap();
    assert_eq!(entries.len(), 100);
    assert!(entries.iter().all(|e| e["parent_id"] == id(&ex) && e["depth"] == 1), "{entries:?}");
    let mut names: Vec<&str> = entries.iter().map(|e| e["workflow_task"].as_str().unwrap()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 100, "one entry per task");
}

#[tokio::test]
async fn a_task_timeout_bounds_its_child_and_the_policy_applies() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "tasktimeout").await;
    // The action itself may run for an hour; the task allows it one second.
    action(&app, &u, json!({"ref": "wf.slow", "runner_type": "shell", "command": "sleep 30", "timeout_seconds": 3600}))
        .await;
    workflow(
        &app,
        &u,
        "bounded",
        json!({"tasks": [
            {"name": "slow", "action": "wf.slow", "timeout_seconds": 1, "on_failure": "continue"},
            {"name": "after", "action": "core.echo", "depends_on": ["slow"], "input": {"message": "went on"}}
        ], "output": {"after": "{{ task_after.result.output.message }}"}}),
    )
    .await;
    let ex = run(&app, &u, "wf.bounded", json!({})).await;
    assert_eq!(ex["status"], "succeeded_with_errors", "{ex}");
    assert_eq!(ex["result"]["output"]["after"], "went on");
    let kids = children(&app, &u, id(&ex)).await;
    let slow = kids.iter().find(|c| c["action_ref"] == "wf.slow").expect("the slow task ran");
    assert_eq!(slow["status"], "failed", "{slow}");
    assert_eq!(slow["result"]["failure_reason"], "timeout", "{slow}");
    let bound: Option<i32> = sqlx::query_scalar("SELECT timeout_seconds FROM attune.execution WHERE id = $1")
        .bind(id(slow))
        .fetch_one(app.pool())
        .await
        .unwrap();
    assert_eq!(bound, Some(1), "the task's timeout, not the action's");
}

/// A workflow's task due now, created by the engine of a process whose worker has an idle
/// lane, is created `running` on it and handed over after the step's commit
/// (`attune_core::handoff`), with the trail a claim writes: change log created (as
/// scheduled) → running → succeeded, audit scheduled → started (by the worker) →
/// succeeded, one attempt on that worker in the task's tenant. Its next task sees its result.
#[tokio::test]
async fn tasks_due_now_are_handed_to_an_idle_lane_with_a_claims_trail() {
    let app = TestApp::spawn_pipeline().await;
    let u = setup(&app, "handwf").await;
    let step = "def run(params):\n    return {'step': params['step'], 'previous': params.get('previous')}\n";
    action(&app, &u, json!({"ref": "wf.step", "runner_type": "python", "code": step})).await;
    let tasks: Vec<Value> = (1..=6)
        .map(|i| {
            let mut t = json!({"name": format!("t{i}"), "action": "wf.step",
                               "input": {"step": i, "previous": format!("{{{{ task_t{}.result.output.step }}}}", i - 1)}});
            if i > 1 {
                t["depends_on"] = json!([format!("t{}", i - 1)]);
            } else {
                t["input"] = json!({"step": 1});
            }
            t
        })
        .collect();
    workflow(&app, &u, "chain", json!({"tasks": tasks})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ex = run(&app, &u, "wf.chain", json!({})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let kids = children(&app, &u, id(&ex)).await;
    let steps: Vec<(i64, Value)> = kids
        .iter()
        .map(|k| (k["result"]["output"]["step"].as_i64().unwrap(), k["result"]["output"]["previous"].clone()))
        .collect();
    let expected: Vec<(i64, Value)> = (1..=6).map(|i| (i, if i == 1 { Value::Null } else { json!(i - 1) })).collect();
    assert_eq!(steps, expected, "each task ran once, in order, on its predecessor's result");

    let mut handed = 0;
    for kid in &kids {
        let kid = id(kid);
        let trail = app.trail(kid).await;
        let s = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        assert_eq!(
            trail.changes,
            s(&[
                ("execution.created", "scheduled"),
                ("execution.status_changed", "running"),
                ("execution.status_changed", "succeeded")
            ]),
            "task {kid}"
        );
        assert_eq!(
            trail.audits,
            s(&[
                ("execution.scheduled", "service"),
                ("execution.started", "worker"),
                ("execution.succeeded", "worker")
            ]),
            "task {kid}"
        );
        assert_eq!(trail.attempts.len(), 1, "task {kid}: one attempt");
        assert_eq!(trail.attempts[0].1, u.tenant_id, "task {kid}: in its tenant");
        // Started in the transaction that scheduled it: handed, not claimed.
        handed += trail.handed as usize;
    }
    assert!(handed > 0, "none of the 6 tasks was handed to the idle lane");
}
