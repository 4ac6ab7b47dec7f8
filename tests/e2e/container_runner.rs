//! The container runner end to end (T3.17): a pack of container actions loaded from a
//! directory and run by the whole pipeline in a real Docker engine, with the busybox image
//! scripts/container-engine.sh imports (no registry). These tests need that engine: without
//! it they fail, saying how to get one (scripts/test.sh sets it up).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use attune_tests::{eventually, TestApp, User};
use attune_worker::runners::container::{connect, engine_address, LABEL_ACTION};
use rand::Rng;
use serde_json::{json, Value};

const IMAGE: &str = "attune-test/busybox:1";

/// The engine and the test image, or a failure naming what is missing.
async fn engine_or_fail() {
    let address = engine_address(&attune_core::Config::default().sandbox);
    if let Err(e) = connect(&address).await {
        panic!("{e}\nT3.17 needs a Docker engine: run scripts/container-engine.sh (scripts/test.sh does)");
    }
    let image = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]);
    assert!(!image.is_empty(), "the engine at {address} has no {IMAGE}: run scripts/container-engine.sh");
}

/// `docker ARGS`' stdout, trimmed ("" when it fails).
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("the docker client runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The containers (running or not) of action `action_ref`: `(id, image)` each.
fn containers_of(action_ref: &str) -> Vec<String> {
    let filter = format!("label={LABEL_ACTION}={action_ref}");
    let listed = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.ID}} {{.Image}}"]);
    listed.lines().map(str::to_string).collect()
}

/// `text` as a YAML block scalar's lines, indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    text.lines().map(|l| format!("{:indent$}{l}\n", "")).collect()
}

/// A pack directory: container actions, one of them a script of the pack run from `/pack`.
fn write_pack(dir: &Path, pack: &str) {
    let actions = dir.join("actions");
    fs::create_dir_all(&actions).unwrap();
    fs::write(dir.join("pack.yaml"), format!("ref: {pack}\nlabel: Containers\nversion: 1.0.0\n")).unwrap();
    fs::write(actions.join("data.txt"), "from the pack").unwrap();
    // `header` (YAML lines), then a container block running `command` in the test image.
    let action = |name: &str, header: &str, command: &str| {
        let yaml = format!(
            "runner_type: container\n{header}container:\n  image: {IMAGE}\n  command: |\n{}",
            block(command, 4)
        );
        fs::write(actions.join(format!("{name}.yaml")), yaml).unwrap();
    };
    // Reads its document on stdin; reports what it sees of its environment: the pack
    // (read-only), the image's root (read-only), /tmp (writable), the network (none).
    action(
        "probe",
        "parameters:\n  name: {type: string, required: true}\n  token: {type: string, secret: true}\n  \
         host: {type: string, required: true}\n  port: {type: integer, required: true}\n",
        r#"doc=$(cat)
secrets_in_env=$(env | grep -c tok- || true)
pack=$(cat /pack/actions/data.txt)
if touch /pack/actions/new 2>/dev/null; then pack_rw=yes; else pack_rw=no; fi
if touch /etc/new 2>/dev/null; then root_rw=yes; else root_rw=no; fi
if touch /tmp/new 2>/dev/null; then tmp_rw=yes; else tmp_rw=no; fi
net=$(echo ping | nc -w 2 "$ATTUNE_PARAM_HOST" "$ATTUNE_PARAM_PORT" 2>&1 || true)
echo "{\"stdin\": $doc, \"env_name\": \"$ATTUNE_PARAM_NAME\", \"secrets_in_env\": $secrets_in_env, \"pack\": \"$pack\", \"pack_rw\": \"$pack_rw\", \"root_rw\": \"$root_rw\", \"tmp_rw\": \"$tmp_rw\", \"net\": \"$net\"}"
"#,
    );
    // With the network the block asks for: finds the host (the default route's gateway)
    // and talks to it.
    fs::write(
        actions.join("online.yaml"),
        format!(
            "runner_type: container\nparameters:\n  port: {{type: integer, required: true}}\n\
             container:\n  image: {IMAGE}\n  network: true\n  command: |\n{}",
            block(
                r#"gw=$(ip route | awk '/default/ {print $3}')
got=$(echo ping | nc -w 3 "$gw" "$ATTUNE_PARAM_PORT")
echo "{\"gateway\": \"$gw\", \"got\": \"$got\"}""#,
                4
            )
        ),
    )
    .unwrap();
    // The action's code is the pack's own script, mounted at /pack.
    fs::write(
        actions.join("hello.sh"),
        "#!/bin/sh\necho \"{\\\"hello\\\": \\\"$ATTUNE_PARAM_NAME\\\", \\\"from\\\": \\\"$0\\\"}\"\n",
    )
    .unwrap();
    fs::set_permissions(actions.join("hello.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(
        actions.join("hello.yaml"),
        format!("runner_type: container\nentry_point: hello.sh\nparameters:\n  name: {{type: string}}\ncontainer:\n  image: {IMAGE}\n"),
    )
    .unwrap();
    // The action's own `command`, run by /bin/sh -c in the image.
    fs::write(
        actions.join("fail.yaml"),
        format!(
            "runner_type: container\ncommand: |\n{}container:\n  image: {IMAGE}\n",
            block("echo partial\necho 'it broke' >&2\nexit 4", 2)
        ),
    )
    .unwrap();
    action("slow", "timeout_seconds: 2\n", "echo started\nsleep 60");
    action("sleepy", "timeout_seconds: 60\n", "sleep 60");
    fs::write(
        actions.join("missing.yaml"),
        "runner_type: container\ntimeout_seconds: 20\ncontainer:\n  image: attune-test/not-here:1\n",
    )
    .unwrap();
}

async fn start(app: &TestApp, u: &User, action: &str, parameters: Value) -> i64 {
    let run = app.post(u, "/api/v1/executions", json!({"action": action, "parameters": parameters})).await;
    assert_eq!(run.status, 201, "run {action}: {:?}", run.body);
    run.body["id"].as_i64().unwrap()
}

async fn run(app: &TestApp, u: &User, action: &str, parameters: Value) -> Value {
    let id = start(app, u, action, parameters).await;
    app.finished_execution(u, id).await
}

/// A TCP server on every address of the host answering `pong`; returns its port.
async fn pong_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = socket.write_all(b"pong\n").await;
            });
        }
    });
    port
}

#[tokio::test]
async fn t3_17_container_runner_execution() {
    engine_or_fail().await;
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("containers").await;
    let pack = format!("ct{}", rand::thread_rng().gen::<u32>());
    let dir = tempfile::tempdir().unwrap();
    write_pack(dir.path(), &pack);
    let loaded = app.post(&u, "/api/v1/packs", json!({"path": dir.path()})).await;
    assert_eq!(loaded.status, 201, "{:?}", loaded.body);
    let port = pong_server().await;

    // With the network the block asks for, the container reaches the host.
    let ex = run(&app, &u, &format!("{pack}.online"), json!({"port": port})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let gateway = ex["result"]["output"]["gateway"].as_str().unwrap().to_string();
    assert_eq!(
        ex["result"]["output"]["got"], "pong",
        "the control case: the host answers a container with network: {ex}"
    );

    // The probe: its parameters arrive on stdin (the secret one only there), the pack is
    // mounted read-only, the root filesystem is read-only, /tmp is not, and by default
    // there is no network: the same host is unreachable.
    let params = json!({"name": "Ada", "token": "tok-991-secret", "host": gateway, "port": port});
    let ex = run(&app, &u, &format!("{pack}.probe"), params).await;
    assert_eq!((ex["status"].as_str(), ex["result"]["exit_code"].as_i64()), (Some("succeeded"), Some(0)), "{ex}");
    let output = &ex["result"]["output"];
    assert_eq!(output["stdin"]["parameters"]["name"], "Ada", "{ex}");
    assert_eq!(output["stdin"]["parameters"]["token"], "********", "the secret arrived, and is masked in the result");
    assert_eq!(output["stdin"]["context"]["action_ref"], format!("{pack}.probe"));
    assert_eq!((output["env_name"].as_str(), output["secrets_in_env"].as_i64()), (Some("Ada"), Some(0)), "{ex}");
    assert_eq!(output["pack"], "from the pack");
    assert_eq!(
        (output["pack_rw"].as_str(), output["root_rw"].as_str(), output["tmp_rw"].as_str()),
        (Some("no"), Some("no"), Some("yes"))
    );
    let net = output["net"].as_str().unwrap();
    assert!(net.contains("Network is unreachable") && !net.contains("pong"), "no network by default: {net}");
    assert!(!ex.to_string().contains("tok-991-secret"), "{ex}");

    // The pack's own script as the entry point, from the mounted pack.
    let ex = run(&app, &u, &format!("{pack}.hello"), json!({"name": "Bo"})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["output"], json!({"hello": "Bo", "from": "/pack/actions/hello.sh"}));

    // A failing command: its exit code, stderr's tail as the error, its output kept.
    let ex = run(&app, &u, &format!("{pack}.fail"), json!({})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(
        (ex["result"]["exit_code"].as_i64(), ex["result"]["error"].as_str()),
        (Some(4), Some("it broke")),
        "{ex}"
    );
    assert_eq!(ex["result"]["stdout"], "partial\n");

    // A timeout stops the container and removes it; while it runs, it is there.
    let slow = format!("{pack}.slow");
    let started = Instant::now();
    let id = start(&app, &u, &slow, json!({})).await;
    let running = eventually("the slow action's container to run", Duration::from_secs(20), || async {
        let listed = containers_of(&slow);
        (!listed.is_empty()).then_some(listed)
    })
    .await;
    assert_eq!(running.len(), 1, "{running:?}");
    assert!(running[0].ends_with(&format!(" {IMAGE}")), "started with the action's image: {running:?}");
    let ex = app.finished_execution(&u, id).await;
    assert_eq!(
        (ex["status"].as_str(), ex["result"]["failure_reason"].as_str(), ex["result"]["error"].as_str()),
        (Some("failed"), Some("timeout"), Some("timed out after 2 s")),
        "{ex}"
    );
    assert_eq!(ex["result"]["stdout"], "started\n");
    assert!(started.elapsed() < Duration::from_secs(15), "stopped at its timeout: {:?}", started.elapsed());

    // A cancel request stops it as well.
    let sleepy = format!("{pack}.sleepy");
    let id = start(&app, &u, &sleepy, json!({})).await;
    eventually("the sleepy action's container to run", Duration::from_secs(20), || async {
        (!containers_of(&sleepy).is_empty()).then_some(())
    })
    .await;
    let asked = Instant::now();
    let cancel = app.post(&u, &format!("/api/v1/executions/{id}/cancel"), json!({})).await;
    assert_eq!(cancel.status, 202, "{:?}", cancel.body);
    let ex = app.finished_execution(&u, id).await;
    assert_eq!(ex["status"], "canceled", "{ex}");
    assert!(asked.elapsed() < Duration::from_secs(15), "stopped on request: {:?}", asked.elapsed());

    // An image the engine does not have and cannot pull: the execution fails naming it.
    let ex = run(&app, &u, &format!("{pack}.missing"), json!({})).await;
    assert_eq!(ex["status"], "failed", "{ex}");
    let error = ex["result"]["error"].as_str().unwrap();
    assert!(error.contains("attune-test/not-here:1"), "{error}");

    // No container is left behind, whatever the way its action ended.
    for action in ["online", "probe", "hello", "fail", "slow", "sleepy", "missing"] {
        let left = containers_of(&format!("{pack}.{action}"));
        assert!(left.is_empty(), "{pack}.{action} left containers: {left:?}");
    }
}
