//! Per-pack runtime environments (T2.12, T2.13, T3.19): packs with a `requirements.txt` or
//! a `package.json`, loaded from directories, run by the whole pipeline; each gets its own
//! virtualenv or `node_modules` under `<data_dir>/envs/`, built once and cached.
//!
//! The fixture packs (`tests/fixtures/runtime_packs`, see its README) install local
//! packages only — wheels and an npm folder inside the pack, no index — so these tests need
//! neither PyPI nor the npm registry.

use std::fs;
use std::path::{Path, PathBuf};

use attune_tests::{workspace_root, TestApp, User};
use serde_json::{json, Value};

/// A pack of `tests/fixtures/runtime_packs`.
fn runtime_pack(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/runtime_packs").join(name)
}

async fn load_pack(app: &TestApp, u: &User, dir: &Path) {
    let loaded = app.post(u, "/api/v1/packs", json!({"path": dir})).await;
    assert_eq!(loaded.status, 201, "load {}: {:?}", dir.display(), loaded.body);
}

async fn start(app: &TestApp, u: &User, action: &str, parameters: Value) -> i64 {
    let run = app.post(u, "/api/v1/executions", json!({"action": action, "parameters": parameters})).await;
    assert_eq!(run.status, 201, "{:?}", run.body);
    run.body["id"].as_i64().unwrap()
}

async fn run(app: &TestApp, u: &User, action: &str, parameters: Value) -> Value {
    let id = start(app, u, action, parameters).await;
    app.finished_execution(u, id).await
}

/// `<data_dir>/envs/<kind>`, as the worker sees it.
fn envs_dir(app: &TestApp, kind: &str) -> PathBuf {
    app.ctx.config.data_dir.join("envs").join(kind).canonicalize().unwrap()
}

/// The entries of `<data_dir>/envs/<kind>`: environments, lock files, build folders.
fn entries(app: &TestApp, kind: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(envs_dir(app, kind))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The finished environments (folders not starting with `.`) of `<data_dir>/envs/<kind>`.
fn environments(app: &TestApp, kind: &str) -> Vec<String> {
    entries(app, kind).into_iter().filter(|n| !n.starts_with('.')).collect()
}

fn marker(env: &Path) -> Value {
    serde_json::from_slice(&fs::read(env.join(".attune-env.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn t2_12_python_action_with_dependencies() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("t212").await;
    load_pack(&app, &u, &runtime_pack("py_a")).await;

    let ex = run(&app, &u, "rt_py_a.which", json!({"name": "ada"})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let output = &ex["result"]["output"];
    assert_eq!(output["version"], "1.0.0", "requirements.txt's pin: {ex}");
    assert_eq!(output["greeting"], "attune-demo 1.0.0 greets ada");
    // The virtualenv is the pack's, under the data dir, and python ran from it.
    let envs = environments(&app, "python");
    assert_eq!(envs.len(), 1, "{envs:?}");
    assert!(envs[0].starts_with("rt_py_a-1.0.0-"), "{envs:?}");
    let env = envs_dir(&app, "python").join(&envs[0]);
    assert_eq!(output["prefix"], env.to_string_lossy().as_ref(), "{ex}");
    assert!(output["module"].as_str().unwrap().starts_with(&format!("{}/lib/", env.display())), "{ex}");
    let built = marker(&env);
    assert_eq!((built["pack"].as_str(), built["version"].as_str()), (Some("rt_py_a"), Some("1.0.0")));
    eprintln!("cold python environment build: {} s", built["build_seconds"]);

    // Cached: the next execution uses it as it is.
    let again = run(&app, &u, "rt_py_a.which", json!({"name": "bob"})).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["result"]["output"]["prefix"], output["prefix"]);
    assert_eq!(marker(&env), built, "not rebuilt");

    // Isolated: python actions of packs without requirements.txt run with the system
    // python, which has no attune-demo.
    assert_eq!(app.post(&u, "/api/v1/packs", json!({"ref": "plain", "version": "1.0.0"})).await.status, 201);
    let code = "import sys\ndef run(params):\n    import attune_demo\n";
    let action = json!({"ref": "plain.demo", "runner_type": "python", "code": code});
    assert_eq!(app.post(&u, "/api/v1/actions", action).await.status, 201);
    let plain = run(&app, &u, "plain.demo", json!({})).await;
    assert_eq!(plain["status"], "failed", "{plain}");
    assert!(plain["result"]["error"].as_str().unwrap().contains("No module named 'attune_demo'"), "{plain}");
}

#[tokio::test]
async fn t2_13_node_action_runs() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("t213").await;
    load_pack(&app, &u, &runtime_pack("node_pad")).await;

    let ex = run(&app, &u, "rt_node.pad", json!({"text": "42", "width": 6})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let output = &ex["result"]["output"];
    assert_eq!(output["padded"], "....42", "{ex}");
    assert_eq!(output["pad_version"], "1.2.0");
    // npm ci installed the pack's dependencies into its own node_modules, the action's
    // NODE_PATH; the pack's directory is untouched.
    let envs = environments(&app, "node");
    assert_eq!(envs.len(), 1, "{envs:?}");
    assert!(envs[0].starts_with("rt_node-1.0.0-"), "{envs:?}");
    let env = envs_dir(&app, "node").join(&envs[0]);
    let installed = env.join("node_modules/attune-demo-pad/index.js");
    assert!(installed.is_file(), "{}", installed.display());
    assert_eq!(output["resolved"], installed.to_string_lossy().as_ref(), "{ex}");
    assert!(env.join("package-lock.json").is_file(), "installed from the lock file");
    assert!(!runtime_pack("node_pad").join("node_modules").exists());
    eprintln!("cold node environment build: {} s", marker(&env)["build_seconds"]);

    // Inline code of the pack's actions gets the same environment; a failure is the
    // thrown error.
    let code = "const pad = require('attune-demo-pad');\n\
                module.exports.run = async ({n}) => { if (n < 0) throw new Error('n must be >= 0'); return {id: pad(String(n), 4, '0')}; };\n";
    let action = json!({"ref": "rt_node.inline", "runner_type": "node", "code": code,
                        "parameters": {"n": {"type": "integer"}}});
    let created = app.post(&u, "/api/v1/actions", action).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let inline = run(&app, &u, "rt_node.inline", json!({"n": 7})).await;
    assert_eq!((inline["status"].as_str(), &inline["result"]["output"]), (Some("succeeded"), &json!({"id": "0007"})));
    let thrown = run(&app, &u, "rt_node.inline", json!({"n": -1})).await;
    assert_eq!(thrown["status"], "failed", "{thrown}");
    assert!(thrown["result"]["error"].as_str().unwrap().starts_with("Error: n must be >= 0"), "{thrown}");
    assert_eq!(environments(&app, "node"), envs, "one environment for the pack");
}

#[tokio::test]
async fn t3_19_two_packs_pin_different_versions_concurrently() {
    let app = TestApp::spawn_pipeline().await;
    // Two workers: the builds are shared across workers, not only within one.
    app.start_worker();
    let u = app.register("t319").await;
    load_pack(&app, &u, &runtime_pack("py_a")).await;
    load_pack(&app, &u, &runtime_pack("py_b")).await;

    // Every execution is started before either environment exists: the first of each pack
    // builds it, the others wait for that build.
    let mut started = Vec::new();
    for i in 0..4 {
        for pack in ["rt_py_a", "rt_py_b"] {
            let id = start(&app, &u, &format!("{pack}.which"), json!({"name": format!("n{i}"), "hold": 0.3})).await;
            started.push((pack, id));
        }
    }
    let mut prefixes = std::collections::HashMap::new();
    for (pack, id) in started {
        let ex = app.finished_execution(&u, id).await;
        assert_eq!(ex["status"], "succeeded", "{ex}");
        let want = if pack == "rt_py_a" { "1.0.0" } else { "2.0.0" };
        assert_eq!(ex["result"]["output"]["version"], want, "{pack}: {ex}");
        let prefix = ex["result"]["output"]["prefix"].as_str().unwrap().to_string();
        assert_eq!(prefixes.entry(pack).or_insert_with(|| prefix.clone()), &prefix, "one environment per pack");
    }
    assert_ne!(prefixes["rt_py_a"], prefixes["rt_py_b"]);
    // One environment per pack, and nothing half-built left.
    let envs = environments(&app, "python");
    assert_eq!(envs.len(), 2, "{envs:?}");
    assert!(envs[0].starts_with("rt_py_a-1.0.0-") && envs[1].starts_with("rt_py_b-1.0.0-"), "{envs:?}");
    let leftovers: Vec<String> = entries(&app, "python").into_iter().filter(|n| n.starts_with(".build-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn a_failed_requirements_build_fails_the_execution_with_pips_error_and_leaves_no_environment() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("badreq").await;
    // py_a without its wheels: pip finds nothing to install.
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("py_bad");
    fs::create_dir_all(pack.join("actions")).unwrap();
    fs::create_dir_all(pack.join("vendor")).unwrap();
    let fixture = runtime_pack("py_a");
    for file in ["requirements.txt", "actions/which.yaml", "actions/which.py"] {
        fs::copy(fixture.join(file), pack.join(file)).unwrap();
    }
    fs::write(pack.join("pack.yaml"), "ref: rt_py_bad\nversion: 1.0.0\n").unwrap();
    load_pack(&app, &u, &pack).await;

    let ex = run(&app, &u, "rt_py_bad.which", json!({})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    let error = ex["result"]["error"].as_str().unwrap();
    assert!(error.starts_with("cannot build the python environment of pack rt_py_bad 1.0.0"), "{error}");
    assert!(error.contains("No matching distribution found for attune-demo==1.0.0"), "pip's own error: {error}");
    assert!(ex["started_at"].is_string(), "it failed on the worker: {ex}");
    let left = entries(&app, "python");
    let records = |n: &String| n.starts_with('.') && (n.ends_with(".lock") || n.ends_with(".failed"));
    assert!(left.iter().all(records), "only the lock file and the failure's record stay: {left:?}");

    // Failures are not cached: with the wheel in place (requirements.txt unchanged, so the
    // same environment), the next execution builds it.
    let wheel = "attune_demo-1.0.0-py3-none-any.whl";
    fs::copy(fixture.join("vendor").join(wheel), pack.join("vendor").join(wheel)).unwrap();
    let ex = run(&app, &u, "rt_py_bad.which", json!({})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["output"]["version"], "1.0.0");
    assert_eq!(environments(&app, "python").len(), 1);
}

#[tokio::test]
async fn a_warm_python_action_reuses_its_interpreter_and_a_crashed_one_is_replaced() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("warmpy").await;
    load_pack(&app, &u, &runtime_pack("py_warm")).await;

    // `entry_point: warm.py:run`: one interpreter imports the module once and serves every
    // execution: the same import (`boot`) and process, its call counter going up.
    let mut first = Value::Null;
    for n in 1..=5 {
        let ex = run(&app, &u, "rt_py_warm.warm", json!({"n": n})).await;
        assert_eq!(ex["status"], "succeeded", "{ex}");
        let output = &ex["result"]["output"];
        assert_eq!(output["n"], n, "{ex}");
        assert_eq!(output["calls"], n, "not imported again: {ex}");
        if n == 1 {
            first = output.clone();
        }
        assert_eq!((&output["boot"], &output["pid"]), (&first["boot"], &first["pid"]), "{ex}");
    }

    // A crash fails its execution cleanly; the next one gets a new interpreter.
    let crashed = run(&app, &u, "rt_py_warm.warm", json!({"crash": true})).await;
    assert_eq!(crashed["status"], "failed", "{crashed}");
    assert_eq!(crashed["result"]["exit_code"], 7, "{crashed}");
    let error = crashed["result"]["error"].as_str().unwrap();
    assert!(error.starts_with("the warm python interpreter ended during the execution (exit code 7)"), "{error}");
    let next = run(&app, &u, "rt_py_warm.warm", json!({"n": 6})).await;
    assert_eq!(next["status"], "succeeded", "{next}");
    assert_eq!(next["result"]["output"]["calls"], 1, "{next}");
    assert_ne!(next["result"]["output"]["boot"], first["boot"], "{next}");

    // The same module by file only (`entry_point: warm.py`) runs cold: a new import each time.
    let cold = run(&app, &u, "rt_py_warm.cold", json!({"n": 1})).await;
    assert_eq!(cold["status"], "succeeded", "{cold}");
    assert_eq!(cold["result"]["output"]["calls"], 1, "{cold}");
}
