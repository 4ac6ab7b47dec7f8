//! `attune pack list|show|install|upload|reload|remove`.
//!
//! `install DIR` packs the directory ([`crate::archive`]) and uploads it
//! (`POST /api/v1/packs/upload`); `install URL` has the server fetch a git repository
//! (`POST /api/v1/packs/install`). When the tenant already has the pack, both become a new
//! version of it (`POST /api/v1/packs/{ref}/reload` with the archive, or `{"git"}`), so
//! running `install` again after editing the pack updates it.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{json, Value};

use super::{confirm, definition, id_of, segment, Paging};
use crate::archive;
use crate::client::{Api, Body};
use crate::error::CliError;
use crate::output::{self, col, Column, Out};
use crate::Options;

#[derive(Subcommand, Debug)]
pub enum PackCommand {
    /// List the packs you can see (yours and the system packs).
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a pack with its actions, triggers and rules.
    Show { pack: String },
    /// Install (or update) a pack from a directory, or from a git repository URL.
    Install {
        /// A pack directory (with pack.yaml), or a git URL (https://...).
        source: String,
        /// With a git URL: the branch, tag or commit (default: the repository's HEAD).
        #[arg(long = "ref", value_name = "GIT_REF")]
        git_ref: Option<String>,
    },
    /// Install (or update) a pack from a .tar.gz of its directory.
    Upload { archive: PathBuf },
    /// Re-read a pack's files on the server (a pack loaded from a server directory).
    Reload { pack: String },
    /// Remove a pack and everything it defines.
    Remove {
        pack: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

const PACK_COLUMNS: &[Column] = &[
    col("REF", |p| output::text(&p["ref"])),
    col("VERSION", |p| output::text(&p["version"])),
    col("SYSTEM", |p| output::yes_no(&p["system"])),
    col("DESCRIPTION", |p| output::short(&p["description"], 70)),
];

pub async fn run(command: PackCommand, options: &Options) -> Result<(), CliError> {
    let api = Api::connect(options.profile.as_deref())?;
    let out = Out::new(options.output);
    match command {
        PackCommand::List { paging } => {
            let page = api.list("/api/v1/packs", &paging.query()).await?;
            out.list(&page.items, PACK_COLUMNS, Some(page.total));
        }
        PackCommand::Show { pack } => {
            let pack = definition(&api, "pack", &pack).await?;
            show(&api, &out, &pack).await?;
        }
        PackCommand::Install { source, git_ref } => {
            let delivered = if looks_like_git(&source) {
                install_git(&api, &source, git_ref).await?
            } else {
                if git_ref.is_some() {
                    return Err(CliError::usage("--ref goes with a git URL, not a directory"));
                }
                let dir = Path::new(&source);
                let pack_ref = archive::pack_ref(dir)?;
                let bytes = archive::pack_dir(dir)?;
                upload(&api, &pack_ref, bytes).await?
            };
            delivered_report(&api, &out, &delivered).await?;
        }
        PackCommand::Upload { archive: path } => {
            let bytes =
                std::fs::read(&path).map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
            let delivered = upload(&api, "", bytes).await?;
            delivered_report(&api, &out, &delivered).await?;
        }
        PackCommand::Reload { pack } => {
            let reloaded = api
                .send(reqwest::Method::POST, &format!("/api/v1/packs/{}/reload", segment(&pack)), &[], Body::None)
                .await?;
            if out.machine() {
                out.data(&reloaded);
            } else if reloaded["changed"] == json!(false) {
                println!("Pack {} is unchanged (its files are the same)", output::text(&reloaded["ref"]));
            } else {
                println!("Reloaded pack {} {}", output::text(&reloaded["ref"]), output::text(&reloaded["version"]));
            }
        }
        PackCommand::Remove { pack, yes } => {
            let found = definition(&api, "pack", &pack).await?;
            let pack_ref = output::text(&found["ref"]);
            if !confirm(&format!("remove pack {pack_ref} and every action, trigger and rule it defines?"), yes)? {
                return Err(CliError::usage("not removed"));
            }
            api.delete(&format!("/api/v1/packs/{}", id_of(&found)?), &[]).await?;
            if out.machine() {
                out.data(&json!({"removed": pack_ref}));
            } else {
                println!("Removed pack {pack_ref}");
            }
        }
    }
    Ok(())
}

fn looks_like_git(source: &str) -> bool {
    source.contains("://") || source.starts_with("git@")
}

/// Uploads an archive; a pack the tenant already has gets it as its new version.
async fn upload(api: &Api, pack_ref: &str, bytes: Vec<u8>) -> Result<Value, CliError> {
    let first = api
        .send(reqwest::Method::POST, "/api/v1/packs/upload", &[], Body::Bytes("application/gzip", bytes.clone()))
        .await;
    match first {
        Err(CliError::Api(f)) if f.status == 409 && !f.message.contains("system pack") => {
            let pack_ref = if pack_ref.is_empty() { ref_in_conflict(&f.message) } else { Some(pack_ref.to_string()) };
            let Some(pack_ref) = pack_ref else { return Err(CliError::Api(f)) };
            api.send(
                reqwest::Method::POST,
                &format!("/api/v1/packs/{}/reload", segment(&pack_ref)),
                &[],
                Body::Bytes("application/gzip", bytes),
            )
            .await
        }
        other => other,
    }
}

async fn install_git(api: &Api, url: &str, git_ref: Option<String>) -> Result<Value, CliError> {
    let body = json!({"git": url, "ref": git_ref});
    match api.post("/api/v1/packs/install", body.clone()).await {
        Err(CliError::Api(f)) if f.status == 409 && !f.message.contains("system pack") => {
            let Some(pack_ref) = ref_in_conflict(&f.message) else { return Err(CliError::Api(f)) };
            api.post(&format!("/api/v1/packs/{}/reload", segment(&pack_ref)), body).await
        }
        other => other,
    }
}

/// The ref in `pack "demo" already exists; ...`.
fn ref_in_conflict(message: &str) -> Option<String> {
    let rest = message.strip_prefix("pack \"")?;
    Some(rest[..rest.find('"')?].to_string())
}

/// What an install or upload delivered, with the pack's actions and triggers (and the
/// webhook URLs a newcomer wants next).
async fn delivered_report(api: &Api, out: &Out, delivered: &Value) -> Result<(), CliError> {
    if out.machine() {
        out.data(delivered);
        return Ok(());
    }
    let pack_ref = output::text(&delivered["ref"]);
    let verb = match delivered["changed"].as_bool() {
        None => "installed",
        Some(true) => "updated",
        Some(false) => "unchanged (the same files)",
    };
    println!("Pack {pack_ref} {} {verb} ({})", output::text(&delivered["version"]), source_text(&delivered["source"]));
    contents(api, out, &pack_ref).await
}

fn source_text(source: &Value) -> String {
    match source["kind"].as_str() {
        Some("git") => format!(
            "git {} at {}",
            output::text(&source["url"]),
            output::text(&source["commit"]).chars().take(12).collect::<String>()
        ),
        Some("upload") => {
            format!("upload, sha256 {}", output::text(&source["sha256"]).chars().take(12).collect::<String>())
        }
        _ => "reloaded".into(),
    }
}

async fn show(api: &Api, out: &Out, pack: &Value) -> Result<(), CliError> {
    out.record(
        pack,
        &[
            ("ref", output::text(&pack["ref"])),
            ("version", output::text(&pack["version"])),
            ("label", output::text(&pack["label"])),
            ("description", output::text(&pack["description"])),
            ("system", output::yes_no(&pack["system"])),
            ("created", output::time(&pack["created_at"])),
            ("updated", output::time(&pack["updated_at"])),
        ],
    );
    if !out.machine() {
        contents(api, out, &output::text(&pack["ref"])).await?;
    }
    Ok(())
}

/// The pack's actions, triggers and rules as tables.
async fn contents(api: &Api, out: &Out, pack_ref: &str) -> Result<(), CliError> {
    let query = [("pack", pack_ref.to_string()), ("limit", "1000".to_string())];
    let actions = api.list("/api/v1/actions", &query).await?;
    let triggers = api.list("/api/v1/triggers", &query).await?;
    let rules = api.list("/api/v1/rules", &query).await?;
    for (title, items, columns) in [
        ("Actions", &actions.items, super::action::ACTION_COLUMNS),
        ("Triggers", &triggers.items, super::trigger::TRIGGER_COLUMNS),
        ("Rules", &rules.items, super::rule::RULE_COLUMNS),
    ] {
        if items.is_empty() {
            continue;
        }
        println!("\n{}", out.paint(output::Paint::Bold, title));
        out.list(items, columns, None);
    }
    Ok(())
}
