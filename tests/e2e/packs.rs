//! The pack loader and installer: the core pack, a full fixture pack, reloads, and
//! broken packs that must be rejected whole with messages naming file, field and problem.

use std::fs;
use std::path::Path;

use attune_core::bootstrap::load_system_packs;
use attune_core::pack::{install, loader, PackError};
use attune_tests::{fixture_pack, test_config, TestDb};

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn new_tenant(pool: &sqlx::PgPool, name: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO attune.tenant (name) VALUES ($1) RETURNING id")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Loads and installs `dir` for `tenant` in one transaction, committing only on success.
async fn load_into(pool: &sqlx::PgPool, tenant: Option<i64>, dir: &Path) -> Result<install::Installed, PackError> {
    let def = loader::load(dir)?;
    let mut tx = pool.begin().await.unwrap();
    let installed = install::install(&mut tx, tenant, &def, false).await?;
    tx.commit().await.unwrap();
    Ok(installed)
}

#[tokio::test]
async fn core_pack_loads_as_a_system_pack() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let loaded = load_system_packs(&db.pool, &config).await.unwrap();
    assert_eq!(loaded, vec!["core".to_string()]);
    let actions: Vec<(String, String, Option<i64>)> =
        sqlx::query_as("SELECT ref, runner_type, tenant_id FROM attune.action ORDER BY ref")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let refs: Vec<&str> = actions.iter().map(|(r, _, _)| r.as_str()).collect();
    for expected in ["core.echo", "core.fail", "core.local", "core.noop", "core.sleep"] {
        assert!(refs.contains(&expected), "{expected} missing from {refs:?}");
    }
    assert!(actions.iter().all(|(_, _, t)| t.is_none()), "system pack actions have no tenant");
    let runner = |r: &str| actions.iter().find(|(x, _, _)| x == r).unwrap().1.clone();
    assert_eq!(runner("core.noop"), "builtin");
    assert_eq!(runner("core.echo"), "builtin");
    assert_eq!(runner("core.local"), "shell");
    assert_eq!(runner("core.fail"), "shell");

    // A second start finds the pack unchanged and touches nothing.
    let updated_before: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM attune.pack WHERE ref = 'core'").fetch_one(&db.pool).await.unwrap();
    load_system_packs(&db.pool, &config).await.unwrap();
    let updated_after: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM attune.pack WHERE ref = 'core'").fetch_one(&db.pool).await.unwrap();
    assert_eq!(updated_before, updated_after);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM attune.pack").await, 1);
}

#[tokio::test]
async fn packs_dir_packs_load_as_system_packs_too() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.packs.dirs = vec![fixture_pack("test_pack").parent().unwrap().to_path_buf()];
    let loaded = load_system_packs(&db.pool, &config).await.unwrap();
    assert_eq!(loaded, vec!["core".to_string(), "test_pack".to_string()]);
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM attune.rule WHERE tenant_id IS NULL AND ref = 'test_pack.hook_to_echo'")
            .await,
        1
    );
}

#[tokio::test]
async fn fixture_pack_loads_every_kind_of_definition() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    load_system_packs(&db.pool, &test_config(dir.path())).await.unwrap();
    let tenant = new_tenant(&db.pool, "acme").await;
    let installed = load_into(&db.pool, Some(tenant), &fixture_pack("test_pack")).await.unwrap();
    assert!(installed.changed);

    let p = &db.pool;
    assert_eq!(count(p, "SELECT count(*) FROM attune.action WHERE ref LIKE 'test_pack.%'").await, 3);
    assert_eq!(count(p, "SELECT count(*) FROM attune.trigger WHERE ref LIKE 'test_pack.%'").await, 3);
    assert_eq!(count(p, "SELECT count(*) FROM attune.sensor WHERE ref = 'test_pack.watcher'").await, 1);
    assert_eq!(count(p, "SELECT count(*) FROM attune.rule WHERE ref LIKE 'test_pack.%'").await, 2);
    assert_eq!(
        count(p, "SELECT count(*) FROM attune.rule WHERE ref = 'test_pack.tick_to_noop' AND NOT enabled").await,
        1
    );

    // Flat parameters became a JSON Schema; the secret one is recorded.
    let (schema, secret): (serde_json::Value, Vec<String>) =
        sqlx::query_as("SELECT param_schema, secret_params FROM attune.action WHERE ref = 'test_pack.echo_payload'")
            .fetch_one(p)
            .await
            .unwrap();
    assert_eq!(schema["required"], serde_json::json!(["payload"]));
    assert_eq!(schema["properties"]["greeting"]["default"], "hello");
    assert_eq!(secret, vec!["token".to_string()]);

    // `workflow: NAME` was read from workflows/NAME.yaml into the action.
    let workflow: serde_json::Value =
        sqlx::query_scalar("SELECT workflow FROM attune.action WHERE ref = 'test_pack.process_items'")
            .fetch_one(p)
            .await
            .unwrap();
    assert_eq!(workflow["tasks"][0]["name"], "each");

    // Webhook triggers get an unguessable key; other triggers none.
    let keys: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT ref, webhook_key FROM attune.trigger WHERE ref LIKE 'test_pack.%' ORDER BY ref")
            .fetch_all(p)
            .await
            .unwrap();
    for (r, key) in &keys {
        if r == "test_pack.on_hook" {
            assert_eq!(key.as_ref().map(String::len), Some(64), "{r}");
        } else {
            assert!(key.is_none(), "{r} is not a webhook trigger");
        }
    }
    // The rule resolved a system pack's action too.
    assert_eq!(
        count(p, "SELECT count(*) FROM attune.rule r JOIN attune.action a ON a.id = r.action_id WHERE r.ref = 'test_pack.tick_to_noop' AND a.ref = 'core.noop'").await,
        1
    );
}

/// Copies the fixture pack into a temp dir so a test can break it.
fn copy_pack(to: &Path) {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            let target = to.join(path.file_name().unwrap());
            if path.is_dir() {
                copy(&path, &target);
            } else {
                fs::copy(&path, &target).unwrap();
            }
        }
    }
    copy(&fixture_pack("test_pack"), to);
}

#[tokio::test]
async fn reload_updates_in_place_and_removes_dropped_definitions() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    load_system_packs(&db.pool, &test_config(dir.path())).await.unwrap();
    let tenant = new_tenant(&db.pool, "acme").await;
    let pack = dir.path().join("test_pack");
    copy_pack(&pack);
    load_into(&db.pool, Some(tenant), &pack).await.unwrap();
    let ids = |sql: &'static str| {
        let pool = db.pool.clone();
        async move { sqlx::query_as::<_, (i64, Option<String>)>(sql).fetch_one(&pool).await.unwrap() }
    };
    let (action_id, _) = ids("SELECT id, NULL::text FROM attune.action WHERE ref = 'test_pack.say'").await;
    let (trigger_id, key) = ids("SELECT id, webhook_key FROM attune.trigger WHERE ref = 'test_pack.on_hook'").await;

    // Unchanged content: nothing to do.
    assert!(!load_into(&db.pool, Some(tenant), &pack).await.unwrap().changed);

    fs::write(pack.join("actions/say.yaml"), "ref: test_pack.say\nrunner_type: shell\ncommand: echo v2\n").unwrap();
    fs::remove_file(pack.join("actions/echo_payload.yaml")).unwrap();
    fs::remove_file(pack.join("rules/hook_to_echo.yaml")).unwrap();
    fs::write(pack.join("pack.yaml"), "ref: test_pack\nversion: 1.1.0\n").unwrap();
    assert!(load_into(&db.pool, Some(tenant), &pack).await.unwrap().changed);

    let (same_action, _) = ids("SELECT id, command FROM attune.action WHERE ref = 'test_pack.say'").await;
    assert_eq!(same_action, action_id, "a reloaded action keeps its id");
    let (_, command) = ids("SELECT id, command FROM attune.action WHERE ref = 'test_pack.say'").await;
    assert_eq!(command.as_deref(), Some("echo v2"));
    let (same_trigger, same_key) =
        ids("SELECT id, webhook_key FROM attune.trigger WHERE ref = 'test_pack.on_hook'").await;
    assert_eq!((same_trigger, same_key), (trigger_id, key), "a webhook keeps its id and URL across reloads");
    assert_eq!(count(&db.pool, "SELECT count(*) FROM attune.action WHERE ref = 'test_pack.echo_payload'").await, 0);
    assert_eq!(count(&db.pool, "SELECT count(*) FROM attune.rule WHERE ref = 'test_pack.hook_to_echo'").await, 0);
    let (_, version) = ids("SELECT id, version FROM attune.pack WHERE ref = 'test_pack'").await;
    assert_eq!(version.as_deref(), Some("1.1.0"));
}

/// One broken pack: what to do to a copy of the fixture, and what the error must say.
struct Broken {
    what: &'static str,
    breaks: fn(&Path),
    /// Every one of these must appear in the error.
    says: &'static [&'static str],
}

const BROKEN: &[Broken] = &[
    Broken {
        what: "missing pack.yaml",
        breaks: |p| fs::remove_file(p.join("pack.yaml")).unwrap(),
        says: &["pack.yaml", "missing pack.yaml"],
    },
    Broken {
        what: "bad pack ref",
        breaks: |p| fs::write(p.join("pack.yaml"), "ref: Test Pack!\nversion: 1.0.0\n").unwrap(),
        says: &["pack.yaml", "ref", "invalid pack ref \"Test Pack!\""],
    },
    Broken {
        what: "bad action name",
        breaks: |p| fs::write(p.join("actions/say.yaml"), "name: say it\nrunner_type: shell\ncommand: echo\n").unwrap(),
        says: &["actions/say.yaml", "name", "\"say it\""],
    },
    Broken {
        what: "unknown runner_type",
        breaks: |p| fs::write(p.join("actions/say.yaml"), "name: say\nrunner_type: cobol\ncommand: echo\n").unwrap(),
        says: &["actions/say.yaml", "runner_type", "unknown runner_type \"cobol\"", "shell"],
    },
    Broken {
        what: "invalid parameter schema",
        breaks: |p| {
            fs::write(
                p.join("actions/say.yaml"),
                "name: say\nrunner_type: shell\ncommand: echo\nparameters:\n  text: {type: strng}\n",
            )
            .unwrap()
        },
        says: &["actions/say.yaml", "parameters", "\"text\"", "strng"],
    },
    Broken {
        what: "rule naming a missing action",
        breaks: |p| {
            fs::write(
                p.join("rules/hook_to_echo.yaml"),
                "name: hook_to_echo\ntrigger: test_pack.on_hook\naction: test_pack.nope\n",
            )
            .unwrap()
        },
        says: &["rules/hook_to_echo.yaml", "action", "\"test_pack.nope\" does not exist"],
    },
    Broken {
        what: "YAML syntax error",
        breaks: |p| {
            fs::write(p.join("triggers/on_hook.yaml"), "name: on_hook\ntype: webhook\ndescription: \"unterminated\n")
                .unwrap()
        },
        says: &["triggers/on_hook.yaml", "invalid YAML", "line 3"],
    },
    Broken {
        what: "unknown field",
        breaks: |p| {
            fs::write(p.join("triggers/on_hook.yaml"), "name: on_hook\ntype: webhook\nsecret_sauce: 1\n").unwrap()
        },
        says: &["triggers/on_hook.yaml", "unknown field `secret_sauce`"],
    },
    Broken {
        what: "a sensor file naming another pack",
        breaks: |p| {
            let yaml = "name: watcher\npack: other\nrunner_type: python\nentry_point: watcher.py\ntrigger: test_pack.files_seen\n";
            fs::write(p.join("sensors/watcher.yaml"), yaml).unwrap()
        },
        says: &["sensors/watcher.yaml", "pack", "\"other\" does not match the pack \"test_pack\""],
    },
    Broken {
        what: "entry point file missing",
        breaks: |p| fs::remove_file(p.join("actions/echo_payload.py")).unwrap(),
        says: &["actions/echo_payload.yaml", "entry_point", "echo_payload.py", "does not exist"],
    },
    Broken {
        what: "bad cron expression",
        breaks: |p| {
            fs::write(
                p.join("triggers/every_5s.yaml"),
                "name: every_5s\ntype: timer.cron\nparameters: {cron: '99 * * * * *'}\n",
            )
            .unwrap()
        },
        says: &["triggers/every_5s.yaml", "parameters", "99 * * * * *"],
    },
    Broken {
        what: "bad criteria template",
        breaks: |p| {
            fs::write(
                p.join("rules/hook_to_echo.yaml"),
                "name: hook_to_echo\ntrigger: test_pack.on_hook\naction: core.noop\ncriteria: \"trigger.data.x ==\"\n",
            )
            .unwrap()
        },
        says: &["rules/hook_to_echo.yaml", "criteria"],
    },
    Broken {
        what: "duplicate action ref",
        breaks: |p| {
            fs::write(p.join("actions/say2.yaml"), "ref: test_pack.say\nrunner_type: shell\ncommand: echo\n").unwrap()
        },
        says: &["actions/say2.yaml", "\"test_pack.say\" is already defined"],
    },
    Broken {
        what: "missing workflow file",
        breaks: |p| fs::remove_file(p.join("workflows/process_items.yaml")).unwrap(),
        says: &["actions/process_items.yaml", "workflow", "workflows/process_items.yaml does not exist"],
    },
];

#[tokio::test]
async fn broken_packs_are_rejected_whole_with_precise_messages() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    load_system_packs(&db.pool, &test_config(dir.path())).await.unwrap();
    let tenant = new_tenant(&db.pool, "acme").await;
    for (i, case) in BROKEN.iter().enumerate() {
        let pack = dir.path().join(format!("case{i}"));
        copy_pack(&pack);
        (case.breaks)(&pack);
        let err = load_into(&db.pool, Some(tenant), &pack).await.expect_err(case.what);
        assert!(matches!(err, PackError::Invalid(_)), "{}: {err}", case.what);
        let text = err.to_string();
        for needle in case.says {
            assert!(text.contains(needle), "{}: the error should say {needle:?}, but says:\n{text}", case.what);
        }
        // Nothing of the pack was loaded.
        for table in ["pack", "action", "trigger", "sensor", "rule"] {
            let n = count(&db.pool, &format!("SELECT count(*) FROM attune.{table} WHERE tenant_id IS NOT NULL")).await;
            assert_eq!(n, 0, "{}: {table} rows were left behind", case.what);
        }
    }
}

#[tokio::test]
async fn every_problem_of_a_pack_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("p");
    copy_pack(&pack);
    fs::write(pack.join("actions/say.yaml"), "name: say\nrunner_type: cobol\n").unwrap();
    fs::write(pack.join("triggers/on_hook.yaml"), "name: on_hook\ntype: carrier-pigeon\n").unwrap();
    let err = loader::load(&pack).unwrap_err();
    assert_eq!(err.problems().len(), 2, "{err}");
}
