//! Pack delivery: `POST /api/v1/packs/upload` (a `.tar.gz` of a pack directory),
//! `POST /api/v1/packs/install` (`{"git": URL, "ref"?}`), and the new versions a reload
//! may carry as its body (the same archive, or `{"git", "ref"?}`).
//!
//! A delivery is checked in a staging directory of the pack store
//! ([`attune_core::pack::store`]) — unpacked with the archive guards
//! ([`attune_core::pack::archive`]) or fetched by git ([`attune_core::pack::git`]), then
//! read by the one loader — before anything is written. It is then moved into a version
//! directory of its own and installed by the one installer in one transaction, which points
//! the pack at that directory: executions claimed before the commit finish on the files of
//! the version they were given, later ones run the new. Whatever fails, nothing is left:
//! not the staging directory, not a version directory the failed install created, no row.
//! After a new version commits, the pack's older versions are removed — all but the new
//! one and the one it replaced, and only while none of the pack's executions runs.

use std::path::{Path, PathBuf};

use attune_core::audit;
use attune_core::pack::archive::{self, ArchiveError, Limits};
use attune_core::pack::git::{self, GitError};
use attune_core::pack::store::{Staged, Store};
use attune_core::pack::{install, loader, FileError, PackError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{may_run_pack, refuse_taken, PackView};
use crate::auth::{Permission, Principal};
use crate::db;
use crate::definitions::{find, Key};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::ApiState;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(upload)).routes(routes!(install_git))
}

/// Whether a request's body may be a pack archive, and so as large as
/// `packs.max_upload_bytes` rather than `api.max_body_bytes`.
pub fn takes_archive(method: &Method, path: &str) -> bool {
    method == Method::POST
        && (path == "/api/v1/packs/upload"
            || path.strip_prefix("/api/v1/packs/").is_some_and(|rest| rest.ends_with("/reload")))
}

/// The 413 of an archive over `packs.max_upload_bytes`.
pub fn archive_too_large(limit: u64) -> Refusal {
    Refusal::TooLarge(format!(
        "the archive is larger than {limit} bytes (packs.max_upload_bytes, ATTUNE_PACK_MAX_UPLOAD_BYTES)"
    ))
}

/// A refusal: an [`ApiError`], or a 413 whose message names the limit (the JSON envelope
/// is added by [`crate::error::json_errors`], as for every plain-text error).
pub enum Refusal {
    Api(ApiError),
    TooLarge(String),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl From<sqlx::Error> for Refusal {
    fn from(e: sqlx::Error) -> Self {
        Refusal::Api(e.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Api(e) => e.into_response(),
            Refusal::TooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, message).into_response(),
        }
    }
}

/// Where a version came from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Source {
    /// `upload` or `git`.
    pub kind: String,
    /// The repository (git).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The branch, tag or commit asked for (git; none: the repository's HEAD).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The commit installed (git).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// SHA-256 of the archive as uploaded (upload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The hash of the pack's files, which names its version directory.
    pub content_hash: String,
}

/// A pack installed by upload or from git.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Delivered {
    #[serde(flatten)]
    pub pack: PackView,
    pub source: Source,
    /// False when the pack already had exactly these files (a reload that changed nothing).
    #[serde(skip)]
    pub changed: bool,
}

/// Where a new version comes from.
pub enum Incoming {
    /// A `.tar.gz` body, still to be read.
    Archive(Body),
    Git {
        url: String,
        git_ref: Option<String>,
    },
}

/// `{"git": URL, "ref"?}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GitInstall {
    /// The repository: an `https://` URL; `file://` URLs and absolute paths only where
    /// `packs.allow_local_git` is on.
    git: String,
    /// A branch, tag or commit id; default the repository's HEAD.
    #[serde(rename = "ref")]
    git_ref: Option<String>,
}

/// A new version read and checked in staging, not yet installed.
pub struct Checked {
    /// Removed (with everything under it) when dropped.
    staged: Staged,
    /// The pack's directory inside the staging directory.
    root: PathBuf,
    def: loader::PackDefinition,
    source: Source,
}

/// Installs a pack from a `.tar.gz` of its directory into the caller's tenant. The
/// archive may hold the pack's files at its top or in one top folder (`mypack/...`).
/// Entries that are absolute or climb with `..`, links leading outside the pack, device
/// files and FIFOs are refused, each naming the entry; so are archives that hold more than
/// `packs.max_files` entries or unpack to more than `packs.max_unpacked_bytes`. The pack
/// is then checked and installed like a directory: all of it or nothing (nothing is kept
/// on the server either). A new version of an installed pack is a reload
/// (`POST /api/v1/packs/{ref}/reload` with the archive as its body).
#[utoipa::path(post, path = "/api/v1/packs/upload", tag = "packs",
    request_body(content = String, content_type = "application/gzip",
                 description = "a .tar.gz of a pack directory (Content-Type application/gzip or application/octet-stream), at most packs.max_upload_bytes"),
    security(("bearer" = [])),
    responses((status = 201, body = Delivered),
              (status = 400, description = "not a .tar.gz (or another Content-Type)", body = ErrorBody),
              (status = 403, description = "the role lacks definitions:write; a rule or workflow of the pack runs an action the caller may not run", body = ErrorBody),
              (status = 409, description = "the pack ref exists (the tenant's: reload it with the archive; or a system pack's)", body = ErrorBody),
              (status = 413, description = "the archive is over packs.max_upload_bytes, or holds more than packs.max_files entries or packs.max_unpacked_bytes bytes", body = ErrorBody),
              (status = 422, description = "an entry that may not be unpacked (named), or a pack file with problems (all listed)", body = ErrorBody)))]
async fn upload(
    State(state): State<ApiState>,
    who: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Delivered>), Refusal> {
    who.require(Permission::WriteDefinitions)?;
    if !is_archive(&headers) {
        return Err(ApiError::BadRequest(
            "Content-Type must be application/gzip (or application/octet-stream): the body is a .tar.gz of a pack directory"
                .into(),
        )
        .into());
    }
    let checked = receive(&state, Incoming::Archive(body)).await?;
    let delivered = commit_version(&state, &who, checked, None).await?;
    Ok((StatusCode::CREATED, Json(delivered)))
}

/// Installs a pack from a git repository into the caller's tenant: one commit of `ref`
/// (a branch, tag or commit id; default the repository's HEAD), fetched without history,
/// hooks or submodules, whose top folder is the pack (or holds it as its only folder).
/// Only `https://` URLs, unless the server allows its own repositories
/// (`packs.allow_local_git`: `file://` URLs and absolute paths). Then checked and installed
/// like an upload. A newer commit is a reload with `{"git", "ref"?}` as its body.
#[utoipa::path(post, path = "/api/v1/packs/install", tag = "packs", request_body = GitInstall,
    security(("bearer" = [])),
    responses((status = 201, body = Delivered),
              (status = 400, description = "a file:// URL or local path while packs.allow_local_git is off", body = ErrorBody),
              (status = 403, description = "the role lacks definitions:write; a rule or workflow of the pack runs an action the caller may not run", body = ErrorBody),
              (status = 409, description = "the pack ref exists (the tenant's: reload it; or a system pack's)", body = ErrorBody),
              (status = 413, description = "the checkout holds more than packs.max_files entries or packs.max_unpacked_bytes bytes", body = ErrorBody),
              (status = 422, description = "a URL or ref that is not accepted; git could not fetch it (its message); a pack file with problems (all listed)", body = ErrorBody)))]
async fn install_git(
    State(state): State<ApiState>,
    who: Principal,
    ApiJson(body): ApiJson<GitInstall>,
) -> Result<(StatusCode, Json<Delivered>), Refusal> {
    who.require(Permission::WriteDefinitions)?;
    let checked = receive(&state, Incoming::Git { url: body.git, git_ref: body.git_ref }).await?;
    let delivered = commit_version(&state, &who, checked, None).await?;
    Ok((StatusCode::CREATED, Json(delivered)))
}

/// What a reload's body asks for: None (no body, or JSON `null`) re-reads the pack's
/// directory; an archive or `{"git", "ref"?}` is a new version.
pub async fn reload_body(headers: &HeaderMap, body: Body) -> Result<Option<Incoming>, Refusal> {
    if is_archive(headers) {
        return Ok(Some(Incoming::Archive(body)));
    }
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|e| ApiError::BadRequest(format!("the body could not be read (at most 64 KiB of JSON): {e}")))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let json = content_type(headers).is_some_and(|t| t == "application/json" || t.ends_with("+json"));
    if !json {
        return Err(ApiError::BadRequest(
            "a reload takes no body, JSON (null, or {\"git\": URL, \"ref\"?}), or a .tar.gz (Content-Type application/gzip)"
                .into(),
        )
        .into());
    }
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    if value.is_null() {
        return Ok(None);
    }
    let GitInstall { git, git_ref } = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::Unprocessable(if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        })
    })?;
    Ok(Some(Incoming::Git { url: git, git_ref }))
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

fn is_archive(headers: &HeaderMap) -> bool {
    content_type(headers)
        .is_some_and(|t| matches!(t.as_str(), "application/gzip" | "application/x-gzip" | "application/octet-stream"))
}

fn internal(e: impl Into<anyhow::Error>) -> Refusal {
    Refusal::Api(ApiError::Internal(e.into()))
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f).await.map_err(internal)
}

fn open_store(state: &ApiState) -> Result<Store, Refusal> {
    Store::open(&state.ctx.config.data_dir).map_err(|e| {
        internal(anyhow::anyhow!("cannot open the pack store under {}: {e}", state.ctx.config.data_dir.display()))
    })
}

/// Reads a new version into staging and checks it: unpacked or fetched, then loaded.
pub async fn receive(state: &ApiState, incoming: Incoming) -> Result<Checked, Refusal> {
    let config = &state.ctx.config.packs;
    let store = open_store(state)?;
    let staged = store.stage().map_err(internal)?;
    let tree = staged.path().join("tree");
    std::fs::create_dir(&tree).map_err(internal)?;
    let limits = Limits::from_config(config);
    let mut source = match incoming {
        Incoming::Archive(body) => {
            let file = staged.path().join("upload.tar.gz");
            let sha256 = save_body(body, &file, config.max_upload_bytes).await?;
            let t = tree.clone();
            blocking(move || {
                let reader = std::fs::File::open(&file)?;
                let unpacked = archive::unpack(std::io::BufReader::new(reader), &t, limits);
                std::fs::remove_file(&file)?;
                unpacked
            })
            .await?
            .map_err(archive_refusal)?;
            Source {
                kind: "upload".into(),
                url: None,
                git_ref: None,
                commit: None,
                sha256: Some(sha256),
                content_hash: String::new(),
            }
        }
        Incoming::Git { url, git_ref } => {
            let commit =
                git::fetch(&url, git_ref.as_deref(), &tree, config.allow_local_git).await.map_err(|e| match e {
                    GitError::LocalOff(m) => ApiError::BadRequest(m).into(),
                    GitError::Invalid(m) | GitError::Failed(m) => ApiError::Unprocessable(m).into(),
                    GitError::Io(e) => internal(e),
                })?;
            let t = tree.clone();
            blocking(move || archive::check_tree(&t, limits, &[])).await?.map_err(archive_refusal)?;
            Source {
                kind: "git".into(),
                url: Some(url),
                git_ref,
                commit: Some(commit),
                sha256: None,
                content_hash: String::new(),
            }
        }
    };
    let root = archive::pack_root(&tree);
    let (dir, within) = (root.clone(), vec![staged.path().to_path_buf()]);
    let def = blocking(move || loader::load_within(&dir, &within))
        .await?
        .map_err(|e| Refusal::Api(relative_problems(e, &[&root])))?;
    source.content_hash = def.content_hash.clone();
    Ok(Checked { staged, root, def, source })
}

/// Writes the body to `to`, at most `limit` bytes; returns its SHA-256.
async fn save_body(mut body: Body, to: &Path, limit: u64) -> Result<String, Refusal> {
    let mut file = tokio::fs::File::create(to).await.map_err(internal)?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(c) = cause {
                if c.is::<http_body_util::LengthLimitError>() {
                    return archive_too_large(limit);
                }
                cause = c.source();
            }
            ApiError::BadRequest(format!("the body could not be read: {e}")).into()
        })?;
        let Ok(data) = frame.into_data() else { continue };
        total += data.len() as u64;
        if total > limit {
            return Err(archive_too_large(limit));
        }
        hasher.update(&data);
        file.write_all(&data).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    if total == 0 {
        return Err(ApiError::BadRequest("the body is empty: send the .tar.gz of a pack directory".into()).into());
    }
    Ok(hex::encode(hasher.finalize()))
}

fn archive_refusal(e: ArchiveError) -> Refusal {
    match e {
        ArchiveError::Malformed(_) => ApiError::BadRequest(e.to_string()).into(),
        ArchiveError::Refused { entry, problem } => {
            ApiError::Unprocessable(format!("archive entry {entry:?}: {problem}; nothing was installed")).into()
        }
        ArchiveError::TooLarge(message) => Refusal::TooLarge(format!("{message}; nothing was installed")),
        ArchiveError::Io(e) => internal(e),
    }
}

/// The loader's and installer's problems with the files named inside the pack
/// (`actions/say.yaml`), not by where the server keeps them.
fn relative_problems(e: PackError, roots: &[&Path]) -> ApiError {
    let problems = match e {
        PackError::Invalid(problems) => problems,
        PackError::Db(db) => return db.into(),
    };
    let strip = |text: &str| {
        roots.iter().fold(text.to_string(), |t, r| {
            let r = r.display().to_string();
            t.replace(&format!("{r}/"), "").replace(&r, ".")
        })
    };
    let problems = problems
        .into_iter()
        .map(|p| FileError {
            file: roots
                .iter()
                .find_map(|r| p.file.strip_prefix(r).ok())
                .map(|rel| if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel.to_path_buf() })
                .unwrap_or(p.file),
            field: p.field,
            message: strip(&p.message),
        })
        .collect();
    ApiError::Unprocessable(PackError::Invalid(problems).to_string())
}

/// Installs a checked version for the caller's tenant: a new pack (`existing` None; 409
/// when the ref is taken) or a new version of `existing`. In one transaction, holding the
/// pack's delivery lock: the version directory is placed, the installer writes the pack
/// and points it there, the caller's right to run what the pack's rules and workflows
/// run is checked, the change is audited. A version directory this created is removed
/// again unless the transaction commits a change.
pub async fn commit_version(
    state: &ApiState,
    who: &Principal,
    checked: Checked,
    existing: Option<&PackView>,
) -> Result<Delivered, Refusal> {
    let Checked { staged, root, mut def, mut source } = checked;
    let store = open_store(state)?;
    let pack_ref = def.meta.pack_ref.as_str().to_string();
    let mut tx = db::tenant_tx(state.pool(), who.tenant_id).await?;
    sqlx::query_file!("../../sql/api/pack_delivery_lock.sql", who.tenant_id, pack_ref).execute(&mut *tx).await?;
    let previous = match existing {
        None => {
            refuse_taken(&mut tx, who.tenant_id, &pack_ref).await?;
            None
        }
        Some(pack) => {
            if pack.pack_ref != pack_ref {
                return Err(ApiError::Unprocessable(format!(
                    "pack.yaml: ref: the new version is of pack {pack_ref:?}, not {:?}",
                    pack.pack_ref
                ))
                .into());
            }
            // As it is now, under the lock (another delivery may have changed it since).
            find::<PackView>(&mut tx, who, Key::Id(pack.id)).await?.path
        }
    };
    let (tree, version, hash) = (root.clone(), def.meta.version.clone(), def.content_hash.clone());
    let (s, r, tenant) = (store.clone(), pack_ref.clone(), who.tenant_id);
    // Declared after the transaction, so dropped before it: a directory this created is
    // gone before the lock is released.
    let placed = blocking(move || s.place(&tree, tenant, &r, &version, &hash)).await?.map_err(internal)?;
    def.dir = placed.dir.clone();
    let installed = install::install(&mut tx, Some(who.tenant_id), &def, existing.is_none())
        .await
        .map_err(|e| relative_problems(e, &[&root, &placed.dir]))?;
    may_run_pack(&mut tx, who, &def).await?;
    let view = find::<PackView>(&mut tx, who, Key::Id(installed.pack_id)).await?;
    source.content_hash = def.content_hash.clone();
    let source_data = serde_json::to_value(&source).expect("a source serialises");
    if existing.is_none() {
        let data = json!({"ref": view.pack_ref, "path": view.path, "source": source_data});
        audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), "pack.created", "pack", view.id, data).await?;
    } else if installed.changed {
        let data = json!({"ref": view.pack_ref, "version": def.meta.version, "path": view.path, "source": source_data});
        audit::record_one(&mut tx, Some(who.tenant_id), &who.actor(), "pack.reloaded", "pack", view.id, data).await?;
    }
    tx.commit().await?;
    if installed.changed {
        let current = placed.keep();
        drop(staged);
        prune(state, who, view.id, &store, &pack_ref, current, previous).await;
    }
    Ok(Delivered { pack: view, source, changed: installed.changed })
}

/// Removes the pack's version directories but the one it runs now, `current` and
/// `previous` (an execution claimed just before the switch may still start from it), when
/// none of its executions runs; otherwise they wait for a later version. Done holding the
/// pack's delivery lock, so a delivery committed meanwhile is seen (its directory is the
/// one the pack runs now) and none is deleted under it. Failures are logged, not answered:
/// the install has committed.
async fn prune(
    state: &ApiState,
    who: &Principal,
    pack_id: i64,
    store: &Store,
    pack_ref: &str,
    current: PathBuf,
    previous: Option<String>,
) {
    let tenant = who.tenant_id;
    let result = async {
        let mut tx = db::tenant_tx(state.pool(), tenant).await?;
        sqlx::query_file!("../../sql/api/pack_delivery_lock.sql", tenant, pack_ref).execute(&mut *tx).await?;
        let running =
            sqlx::query_file_scalar!("../../sql/api/pack_running.sql", tenant, pack_ref).fetch_one(&mut *tx).await?;
        if running {
            tracing::debug!(tenant, pack = pack_ref, "executions of the pack run: its old versions are kept for now");
            return Ok(Vec::new());
        }
        let now = find::<PackView>(&mut tx, who, Key::Id(pack_id)).await?.path;
        let keep: Vec<PathBuf> =
            [Some(current), previous.map(PathBuf::from), now.map(PathBuf::from)].into_iter().flatten().collect();
        let (s, r) = (store.clone(), pack_ref.to_string());
        let removed = blocking(move || s.prune(tenant, &r, &keep.iter().map(PathBuf::as_path).collect::<Vec<_>>()))
            .await
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("the pruning task failed")))?
            .map_err(|e| ApiError::Internal(e.into()))?;
        tx.commit().await?;
        Ok::<_, ApiError>(removed)
    };
    match result.await {
        Ok(removed) => {
            for dir in removed {
                tracing::info!(tenant, pack = pack_ref, dir = %dir.display(), "removed an old pack version");
            }
        }
        Err(e) => tracing::warn!(tenant, pack = pack_ref, error = %e, "cannot remove old pack versions; they are kept"),
    }
}

/// The pack directory at `path` when it is a version directory of the pack store, read
/// again (a reload without a new version); None for any other directory.
pub async fn reread_stored(state: &ApiState, path: &str) -> Result<Option<loader::PackDefinition>, Refusal> {
    let store = open_store(state)?;
    let real = match std::fs::canonicalize(path) {
        Ok(real) if store.holds(&real) => real,
        Ok(_) => return Ok(None),
        Err(e) if store.holds(Path::new(path)) => {
            return Err(ApiError::Unprocessable(format!(
                "the pack's version directory is gone from the server ({e}); reload it with the archive (or {{\"git\"}}) as the body"
            ))
            .into())
        }
        Err(_) => return Ok(None),
    };
    let within = vec![store.root().to_path_buf()];
    let dir = real.clone();
    let def = blocking(move || loader::load_within(&dir, &within))
        .await?
        .map_err(|e| Refusal::Api(relative_problems(e, &[&real])))?;
    Ok(Some(def))
}
