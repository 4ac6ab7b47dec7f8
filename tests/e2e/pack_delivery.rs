//! Pack delivery over the API: uploads of a `.tar.gz`, installs from git, the archives that
//! must be refused (each naming its entry, nothing left behind), and T3.26 — a reload with
//! a new version while an execution of the old one runs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use attune_tests::{eventually, TestApp, User};
use serde_json::{json, Value};
use tar::{EntryType, Header};

fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// A gzip-compressed tar archive built by `build`.
fn targz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

/// Appends a regular file.
fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, content: &[u8], mode: u32) {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_path(path).unwrap();
    h.set_size(content.len() as u64);
    h.set_mode(mode);
    h.set_cksum();
    b.append(&h, content).unwrap();
}

/// Appends an entry with its name (and link target) written as given, unchecked: what a
/// hostile archive holds.
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: Option<&str>, content: &[u8]) {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, content).unwrap();
}

/// The files of pack `delivered` at `version`: `hello` prints `actions/message.txt`;
/// `slow` waits for the file its `release` parameter names, then prints it too.
fn pack_files(version: &str, said: &str) -> Vec<(String, Vec<u8>, u32)> {
    let f = |p: &str, c: &str, m: u32| (p.to_string(), c.as_bytes().to_vec(), m);
    vec![
        f("pack.yaml", &format!("ref: delivered\nversion: {version}\ndescription: delivered over the API\n"), 0o644),
        f("actions/hello.yaml", "name: hello\nrunner_type: shell\nentry_point: hello.sh\n", 0o644),
        f("actions/hello.sh", "#!/bin/sh\ncat \"$(dirname \"$0\")/message.txt\"\n", 0o755),
        f("actions/message.txt", said, 0o644),
        f(
            "actions/slow.yaml",
            "name: slow\nrunner_type: shell\nentry_point: slow.sh\ntimeout_seconds: 60\n\
             parameters:\n  release: {type: string, required: true}\n",
            0o644,
        ),
        f(
            "actions/slow.sh",
            "#!/bin/sh\ni=0\nwhile [ ! -e \"$ATTUNE_PARAM_RELEASE\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n\
             cat \"$(dirname \"$0\")/message.txt\"\n",
            0o755,
        ),
    ]
}

/// The pack as an archive, under `top/` when given.
fn pack_archive(version: &str, said: &str, top: Option<&str>) -> Vec<u8> {
    targz(|b| {
        for (path, content, mode) in pack_files(version, said) {
            let path = top.map_or(path.clone(), |t| format!("{t}/{path}"));
            file(b, &path, &content, mode);
        }
    })
}

async fn upload(app: &TestApp, u: &User, archive: Vec<u8>) -> attune_tests::Answer {
    app.post_bytes(u, "/api/v1/packs/upload", "application/gzip", archive).await
}

/// Runs `action` and returns its finished execution.
async fn run(app: &TestApp, u: &User, action: &str, parameters: Value) -> Value {
    let started = app.post(u, "/api/v1/executions", json!({"action": action, "parameters": parameters})).await;
    assert_eq!(started.status, 201, "{:?}", started.body);
    app.finished_execution(u, started.body["id"].as_i64().unwrap()).await
}

/// Everything the pack store holds for `tenant` (version directories), and whether a
/// staging directory is left.
fn stored(app: &TestApp, tenant: i64) -> (Vec<PathBuf>, usize) {
    let store = app.ctx.config.data_dir.join("packs");
    let mut versions = Vec::new();
    if let Ok(packs) = fs::read_dir(store.join(tenant.to_string())) {
        for pack in packs.flatten() {
            versions.extend(fs::read_dir(pack.path()).unwrap().flatten().map(|e| e.path()));
        }
    }
    versions.sort();
    let staging = fs::read_dir(store.join(".staging")).map_or(0, |d| d.count());
    (versions, staging)
}

/// An upload round trip: a `.tar.gz` (with or without a top folder) becomes the tenant's
/// pack in a version directory of the store, and its actions run from there; the same
/// ref again is 409, a reload with the same archive changes nothing, a bad pack is 422
/// naming its file by the pack's own path and leaves nothing.
#[tokio::test]
async fn uploaded_pack_installs_and_runs() {
    let app = TestApp::spawn_pipeline().await;
    let u = app.register("uploader").await;

    let archive = pack_archive("1.0.0", "hello from v1\n", Some("delivered"));
    let a = upload(&app, &u, archive.clone()).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["ref"], "delivered");
    assert_eq!(a.body["version"], "1.0.0");
    assert_eq!(a.body["system"], false);
    assert_eq!(a.body["source"]["kind"], "upload");
    assert_eq!(a.body["source"]["sha256"].as_str().unwrap().len(), 64);
    let path = PathBuf::from(a.body["path"].as_str().unwrap());
    let store = fs::canonicalize(app.ctx.config.data_dir.join("packs")).unwrap();
    assert!(path.starts_with(store.join(u.tenant_id.to_string()).join("delivered")), "{path:?}");
    assert!(path.join("actions/hello.sh").is_file());
    assert_eq!(stored(&app, u.tenant_id), (vec![path.clone()], 0));

    let ex = run(&app, &u, "delivered.hello", json!({})).await;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["result"]["stdout"], "hello from v1\n");

    // The same ref again is a conflict that says how to update it.
    let again = upload(&app, &u, pack_archive("1.0.0", "x", None)).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert!(message(&again.body).contains("/reload"), "{:?}", again.body);
    // Re-reading an uploaded pack, or reloading it with the same archive, changes nothing.
    let plain = app.post(&u, "/api/v1/packs/delivered/reload", json!(null)).await;
    assert_eq!((plain.status, plain.body["changed"].as_bool()), (200, Some(false)), "{:?}", plain.body);
    let same = app.post_bytes(&u, "/api/v1/packs/delivered/reload", "application/gzip", archive).await;
    assert_eq!((same.status, same.body["changed"].as_bool()), (200, Some(false)), "{:?}", same.body);
    assert_eq!(same.body["path"], a.body["path"]);
    assert_eq!(stored(&app, u.tenant_id), (vec![path.clone()], 0));

    // Without a top folder, with application/octet-stream; a viewer may not upload.
    let b = app
        .post_bytes(
            &u,
            "/api/v1/packs/upload",
            "application/octet-stream",
            targz(|b| {
                file(b, "pack.yaml", b"ref: flat\nversion: 2.0.0\n", 0o644);
                file(b, "actions/hi.yaml", b"name: hi\nrunner_type: shell\ncommand: echo flat\n", 0o644);
            }),
        )
        .await;
    assert_eq!(b.status, 201, "{:?}", b.body);
    assert_eq!(run(&app, &u, "flat.hi", json!({})).await["result"]["stdout"], "flat\n");
    let viewer = app.add_user(&u, "watcher", "viewer").await;
    let refused = upload(&app, &viewer, pack_archive("1.0.0", "x", None)).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert!(message(&refused.body).contains("definitions:write"), "{:?}", refused.body);

    // Not an archive: 400, by Content-Type or by content.
    let json_body = app.post(&u, "/api/v1/packs/upload", json!({"ref": "x"})).await;
    assert_eq!(json_body.status, 400, "{:?}", json_body.body);
    assert!(message(&json_body.body).contains("Content-Type"), "{:?}", json_body.body);
    let garbage = app.post_bytes(&u, "/api/v1/packs/upload", "application/gzip", b"not gzip".to_vec()).await;
    assert_eq!(garbage.status, 400, "{:?}", garbage.body);
    assert!(message(&garbage.body).contains("tar"), "{:?}", garbage.body);

    // A pack with a bad file: every problem named by the pack's own paths; nothing kept.
    let bad = upload(
        &app,
        &u,
        targz(|b| {
            file(b, "broken/pack.yaml", b"ref: broken\nversion: 1.0.0\n", 0o644);
            file(b, "broken/actions/say.yaml", b"name: say\nrunner_type: cobol\n", 0o644);
            file(b, "broken/actions/run.yaml", b"name: run\nrunner_type: shell\nentry_point: nope.sh\n", 0o644);
        }),
    )
    .await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    let text = message(&bad.body);
    assert!(text.contains("actions/say.yaml") && text.contains("cobol"), "{text}");
    assert!(text.contains("actions/run.yaml") && text.contains("nope.sh"), "{text}");
    assert!(!text.contains(".staging") && !text.contains(&store.display().to_string()), "{text}");
    assert_eq!(app.get(&u, "/api/v1/packs/ref/broken").await.status, 404);
    let (versions, staging) = stored(&app, u.tenant_id);
    assert_eq!((versions.len(), staging), (2, 0), "{versions:?}");
}

/// Every archive that could reach outside its directory, or exhaust the server, is refused
/// with a 4xx naming the entry (or the limit), and leaves nothing: no pack, no directory.
#[tokio::test]
async fn hostile_archives_are_refused_and_leave_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.packs.max_upload_bytes = 64 * 1024;
        c.packs.max_unpacked_bytes = 1024 * 1024;
        c.packs.max_files = 40;
    })
    .await;
    let u = app.register("hostile").await;
    let pack_yaml = |b: &mut tar::Builder<Vec<u8>>| file(b, "pack.yaml", b"ref: evil\nversion: 1.0.0\n", 0o644);
    type Build = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;
    let cases: Vec<(&str, Build, u16, &str)> = vec![
        (
            "an absolute path",
            Box::new(|b| raw(b, "/tmp/attune-evil/x.yaml", EntryType::Regular, None, b"x")),
            422,
            "/tmp/attune-evil/x.yaml",
        ),
        ("a `..` path", Box::new(|b| raw(b, "actions/../../x.sh", EntryType::Regular, None, b"x")), 422, "../../x.sh"),
        (
            "a symlink out",
            Box::new(|b| raw(b, "actions/passwd", EntryType::Symlink, Some("/etc/passwd"), b"")),
            422,
            "actions/passwd",
        ),
        (
            "a symlink climbing out",
            Box::new(|b| raw(b, "actions/up", EntryType::Symlink, Some("../../../etc"), b"")),
            422,
            "actions/up",
        ),
        (
            "links chained out",
            Box::new(|b| {
                raw(b, "a/b/c", EntryType::Symlink, Some(".."), b"");
                raw(b, "a/out", EntryType::Symlink, Some("b/c/../.."), b"");
            }),
            422,
            "a/out",
        ),
        (
            "a file written through a link",
            Box::new(|b| {
                raw(b, "actions", EntryType::Symlink, Some("."), b"");
                raw(b, "actions/x.yaml", EntryType::Regular, None, b"x");
            }),
            422,
            "actions/x.yaml",
        ),
        (
            "a hard link out",
            Box::new(|b| raw(b, "actions/shadow", EntryType::Link, Some("/etc/shadow"), b"")),
            422,
            "actions/shadow",
        ),
        ("a device file", Box::new(|b| raw(b, "actions/null", EntryType::Char, None, b"")), 422, "actions/null"),
        ("a FIFO", Box::new(|b| raw(b, "actions/pipe", EntryType::Fifo, None, b"")), 422, "actions/pipe"),
        (
            "an entry twice",
            Box::new(|b| {
                file(b, "actions/x.yaml", b"name: x\nrunner_type: shell\ncommand: 'true'\n", 0o644);
                file(b, "actions/x.yaml", b"name: x\nrunner_type: shell\ncommand: 'false'\n", 0o644);
            }),
            422,
            "actions/x.yaml",
        ),
        (
            "too many entries",
            Box::new(|b| {
                for i in 0..50 {
                    file(b, &format!("notes/{i}.txt"), b"x", 0o644);
                }
            }),
            413,
            "packs.max_files",
        ),
        (
            "an archive that expands enormously",
            Box::new(|b| file(b, "zeros.bin", &vec![0u8; 4 * 1024 * 1024], 0o644)),
            413,
            "packs.max_unpacked_bytes",
        ),
        (
            "an archive over the upload limit",
            Box::new(|b| {
                let noise: Vec<u8> = (0..200 * 1024).map(|_| rand::random::<u8>()).collect();
                file(b, "noise.bin", &noise, 0o644)
            }),
            413,
            "packs.max_upload_bytes",
        ),
    ];
    for (what, build, status, names) in cases {
        let archive = targz(|b| {
            pack_yaml(b);
            build(b);
        });
        let a = upload(&app, &u, archive).await;
        assert_eq!(a.status, status, "{what}: {:?}", a.body);
        assert!(message(&a.body).contains(names), "{what}: the message names {names:?}: {:?}", a.body);
        assert_eq!(app.get(&u, "/api/v1/packs/ref/evil").await.status, 404, "{what}: nothing installed");
        assert_eq!(stored(&app, u.tenant_id), (vec![], 0), "{what}: nothing left on the server");
    }
    assert!(!Path::new("/tmp/attune-evil").exists());

    // A link that stays inside the pack is fine.
    let ok = upload(
        &app,
        &u,
        targz(|b| {
            pack_yaml(b);
            file(b, "shared/hi.yaml", b"name: hi\nrunner_type: shell\ncommand: echo hi\n", 0o644);
            raw(b, "actions/hi.yaml", EntryType::Symlink, Some("../shared/hi.yaml"), b"");
        }),
    )
    .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert_eq!(app.get(&u, "/api/v1/actions/ref/evil.hi").await.status, 200);
}

/// Runs git in `dir` (a test repository), failing the test if it fails; returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes the pack's files into `dir`.
fn write_pack(dir: &Path, version: &str, said: &str) {
    for (path, content, mode) in pack_files(version, said) {
        let target = dir.join(path);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(&target, content).unwrap();
        fs::set_permissions(&target, fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// A pack installed from a local git repository (allowed by packs.allow_local_git) runs;
/// a reload with `{"git"}` installs a newer commit; without the setting local repositories
/// are 400 naming it; unknown refs and other schemes are refused.
#[tokio::test]
async fn pack_installs_from_git() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q"]);
    write_pack(repo.path(), "1.0.0", "hello from git\n");
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "v1"]);
    git(repo.path(), &["tag", "v1"]);
    let first = git(repo.path(), &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.path().display());

    // Off (the default): local repositories are refused, naming the setting.
    let closed = TestApp::spawn().await;
    let c = closed.register("closed").await;
    for local in [url.clone(), repo.path().display().to_string()] {
        let a = closed.post(&c, "/api/v1/packs/install", json!({"git": local})).await;
        assert_eq!(a.status, 400, "{:?}", a.body);
        assert!(message(&a.body).contains("packs.allow_local_git"), "{:?}", a.body);
    }
    let plain_http = closed.post(&c, "/api/v1/packs/install", json!({"git": "http://example.com/p.git"})).await;
    assert_eq!(plain_http.status, 422, "{:?}", plain_http.body);
    assert_eq!(closed.get(&c, "/api/v1/packs/ref/delivered").await.status, 404);

    let app = TestApp::spawn_pipeline_with(|c| c.packs.allow_local_git = true).await;
    let u = app.register("gitter").await;
    let a = app.post(&u, "/api/v1/packs/install", json!({"git": url, "ref": "main"})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.body["source"]["kind"], "git");
    assert_eq!(a.body["source"]["commit"], first.as_str());
    assert_eq!(a.body["source"]["ref"], "main");
    let path = PathBuf::from(a.body["path"].as_str().unwrap());
    assert!(path.join("actions/hello.sh").is_file() && !path.join(".git").exists(), "{path:?}");
    let ex = run(&app, &u, "delivered.hello", json!({})).await;
    assert_eq!(ex["result"]["stdout"], "hello from git\n", "{ex}");
    let audit = app.get(&u, "/api/v1/audit?entity_type=pack").await;
    let created = &audit.body["data"][0];
    assert_eq!(
        (created["action"].as_str(), created["data"]["source"]["commit"].as_str()),
        (Some("pack.created"), Some(first.as_str()))
    );

    // A newer commit, by reload.
    write_pack(repo.path(), "1.1.0", "hello from git, v2\n");
    git(repo.path(), &["commit", "-q", "-am", "v2"]);
    let r = app.post(&u, "/api/v1/packs/delivered/reload", json!({"git": url, "ref": "main"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!((r.body["changed"].as_bool(), r.body["version"].as_str()), (Some(true), Some("1.1.0")));
    assert_ne!(r.body["path"], a.body["path"]);
    assert_eq!(run(&app, &u, "delivered.hello", json!({})).await["result"]["stdout"], "hello from git, v2\n");
    // A tag: back to v1's files (a new version directory is not needed: it is v1's).
    let back = app.post(&u, "/api/v1/packs/delivered/reload", json!({"git": url, "ref": "v1"})).await;
    assert_eq!((back.status, back.body["version"].as_str()), (200, Some("1.0.0")), "{:?}", back.body);
    assert_eq!(back.body["path"], a.body["path"]);

    // Refused: a ref git cannot find (git's words), a ref that could be an option.
    let missing = app.post(&u, "/api/v1/packs/delivered/reload", json!({"git": url, "ref": "no-such-branch"})).await;
    assert_eq!(missing.status, 422, "{:?}", missing.body);
    assert!(message(&missing.body).contains("no-such-branch"), "{:?}", missing.body);
    let option = app.post(&u, "/api/v1/packs/install", json!({"git": url, "ref": "--upload-pack=touch /tmp/x"})).await;
    assert_eq!(option.status, 422, "{:?}", option.body);
    let nowhere = app.post(&u, "/api/v1/packs/install", json!({"git": "file:///no/such/repo"})).await;
    assert_eq!(nowhere.status, 422, "{:?}", nowhere.body);
    assert_eq!(stored(&app, u.tenant_id).1, 0, "no staging left");
}

/// T3.26: a pack updated to 1.1.0 by a reload, with no restart: the execution already
/// running finishes on 1.0.0's files, new executions run 1.1.0's; the old version's
/// directory is kept while it may be in use, and removed by a later update once nothing
/// of the pack runs.
#[tokio::test]
async fn t3_26_pack_update_reload() {
    // The slow action waits for a file in a folder the sandbox shows it.
    let gate = tempfile::tempdir().unwrap();
    fs::set_permissions(gate.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bound = gate.path().to_path_buf();
    let app = TestApp::spawn_pipeline_with(|c| c.sandbox.bind = vec![bound]).await;
    let u = app.register("updater").await;

    // 1. Version 1.0.0; 2. its actions run.
    let v1 = upload(&app, &u, pack_archive("1.0.0", "v1\n", Some("delivered"))).await;
    assert_eq!(v1.status, 201, "{:?}", v1.body);
    let v1_dir = PathBuf::from(v1.body["path"].as_str().unwrap());
    assert_eq!(run(&app, &u, "delivered.hello", json!({})).await["result"]["stdout"], "v1\n");

    // An execution of 1.0.0 in flight.
    let release = gate.path().join("release");
    let slow = app
        .post(&u, "/api/v1/executions", json!({"action": "delivered.slow", "parameters": {"release": release}}))
        .await;
    assert_eq!(slow.status, 201, "{:?}", slow.body);
    let slow_id = slow.body["id"].as_i64().unwrap();
    eventually("the slow execution to run", Duration::from_secs(30), || async {
        let ex = app.get(&u, &format!("/api/v1/executions/{slow_id}")).await;
        (ex.body["status"] == "running").then_some(())
    })
    .await;

    // 3. Version 1.1.0 (new code); 4. reloaded through the API, by id.
    let pack_id = v1.body["id"].as_i64().unwrap();
    let archive = pack_archive("1.1.0", "v2\n", Some("delivered"));
    let reloaded = app.post_bytes(&u, &format!("/api/v1/packs/{pack_id}/reload"), "application/gzip", archive).await;
    assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
    assert_eq!((reloaded.body["changed"].as_bool(), reloaded.body["version"].as_str()), (Some(true), Some("1.1.0")));
    let v2_dir = PathBuf::from(reloaded.body["path"].as_str().unwrap());
    assert_ne!(v1_dir, v2_dir);
    assert_eq!(app.get(&u, &format!("/api/v1/executions/{slow_id}")).await.body["status"], "running");
    assert!(v1_dir.join("actions/slow.sh").is_file(), "the running version's files are kept");

    // 5, 6. A new execution runs the new code, while the old one still runs.
    assert_eq!(run(&app, &u, "delivered.hello", json!({})).await["result"]["stdout"], "v2\n");
    assert_eq!(app.get(&u, &format!("/api/v1/executions/{slow_id}")).await.body["status"], "running");

    // The in-flight execution completes with the old code.
    fs::write(&release, "go").unwrap();
    let old = app.finished_execution(&u, slow_id).await;
    assert_eq!(old["status"], "succeeded", "{old}");
    assert_eq!(old["result"]["stdout"], "v1\n", "the execution claimed before the reload ran 1.0.0's files");
    let new_slow = run(&app, &u, "delivered.slow", json!({"release": release})).await;
    assert_eq!(new_slow["result"]["stdout"], "v2\n");

    // 7. No restart: the same services took all of it. A later version, with nothing of the
    // pack running, removes 1.0.0's directory and keeps the one it replaces.
    let v3 = app
        .post_bytes(&u, "/api/v1/packs/delivered/reload", "application/gzip", pack_archive("1.2.0", "v3\n", None))
        .await;
    assert_eq!(v3.status, 200, "{:?}", v3.body);
    let v3_dir = PathBuf::from(v3.body["path"].as_str().unwrap());
    let mut expected = vec![v2_dir, v3_dir];
    expected.sort();
    assert_eq!(stored(&app, u.tenant_id), (expected, 0));
    assert!(!v1_dir.exists());
    assert_eq!(run(&app, &u, "delivered.hello", json!({})).await["result"]["stdout"], "v3\n");
    let audit = app.get(&u, &format!("/api/v1/audit?entity_type=pack&entity_id={pack_id}")).await;
    let actions: Vec<&str> =
        audit.body["data"].as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, vec!["pack.reloaded", "pack.reloaded", "pack.created"]);
}
