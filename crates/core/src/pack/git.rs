//! Fetching a pack from a git repository with the `git` program: one commit (depth 1) of
//! a branch, tag or commit id, checked out into a fresh directory, without its history.
//!
//! Only `https://` URLs are fetched, unless the server allows its own repositories
//! (`packs.allow_local_git`: `file://` URLs and absolute paths). git runs with no hooks
//! (an empty template, `core.hooksPath=/dev/null`), no submodules, only the allowed
//! protocols (redirects to others fail), no prompts, no system configuration, a clean
//! environment and a time limit; it is killed if the request is abandoned. URLs carrying
//! credentials are refused (they would be recorded): private repositories need a
//! credential helper in the configuration of the server's user.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::quoting;

/// How long fetching may take.
pub const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A local repository while `packs.allow_local_git` is off.
    #[error("{0}")]
    LocalOff(String),
    /// A URL or ref that is not accepted.
    #[error("{0}")]
    Invalid(String),
    /// git could not fetch or check out (no such repository, ref...): its own words.
    #[error("{0}")]
    Failed(String),
    /// git could not be run.
    #[error("cannot run git: {0}")]
    Io(#[from] std::io::Error),
}

/// The most characters of a URL, a ref or git's output a message quotes.
const QUOTE: usize = 200;

fn quote(s: &str) -> String {
    format!("{:?}", quoting::excerpt(s, QUOTE))
}

/// Whether `url` names a repository on the server itself.
fn is_local(url: &str) -> bool {
    url.starts_with("file://") || url.starts_with('/')
}

/// Refuses URLs git is not to fetch; `allow_local` is `packs.allow_local_git`.
pub fn check_url(url: &str, allow_local: bool) -> Result<(), GitError> {
    let invalid = |why: &str| GitError::Invalid(format!("git: {}: {why}", quote(url)));
    if url.is_empty() || url.len() > 2048 {
        return Err(invalid("must be a URL of at most 2048 characters"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("must not hold spaces or control characters"));
    }
    if is_local(url) {
        if !allow_local {
            return Err(GitError::LocalOff(format!(
                "git: {}: repositories on the server itself (file:// URLs and paths) are off; an administrator \
                 turns them on with packs.allow_local_git (ATTUNE_PACK_ALLOW_LOCAL_GIT); otherwise give an https:// URL",
                quote(url)
            )));
        }
        if url.starts_with("file://") && !url.starts_with("file:///") {
            return Err(invalid("a file:// URL must name an absolute path (file:///srv/repo)"));
        }
        return Ok(());
    }
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(invalid(
            "only https:// URLs are accepted (and file:// URLs or absolute paths where packs.allow_local_git is on)",
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(invalid(
            "credentials in the URL are not accepted (they would be recorded); configure a git credential helper \
             for the server's user instead",
        ));
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(invalid("names no host"));
    }
    Ok(())
}

/// Refuses refs git could read as something else (an option, a range, a reflog entry).
pub fn check_ref(r: &str) -> Result<(), GitError> {
    let ok = !r.is_empty()
        && r.len() <= 255
        && r.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && r.chars().all(|c| c.is_ascii_alphanumeric() || "._/+-".contains(c))
        && !r.contains("..")
        && !r.contains("//")
        && !r.ends_with('/')
        && !r.ends_with('.')
        && !r.ends_with(".lock");
    if ok {
        Ok(())
    } else {
        Err(GitError::Invalid(format!(
            "ref: {} must be a branch, tag or commit id (letters, digits, . _ / + -, starting with a letter or digit)",
            quote(r)
        )))
    }
}

/// Fetches `git_ref` (default: the repository's HEAD) of `url` into `dest`, an empty
/// directory, and checks it out without the `.git` folder; returns the commit id.
pub async fn fetch(url: &str, git_ref: Option<&str>, dest: &Path, allow_local: bool) -> Result<String, GitError> {
    check_url(url, allow_local)?;
    if let Some(r) = git_ref {
        check_ref(r)?;
    }
    let wanted = git_ref.unwrap_or("HEAD");
    let protocols = if allow_local && is_local(url) { "file" } else { "https" };
    let work = dest.as_os_str();
    let fail = |what: &str, stderr: String| {
        GitError::Failed(format!("git: cannot {what} {} of {}: {stderr}", quote(wanted), quote(url)))
    };
    run(&[], &["init", "-q", "--template=", "-b", "attune"], Some(work), protocols).await.map_err(|e| match e {
        GitError::Failed(stderr) => fail("prepare a checkout of", stderr),
        other => other,
    })?;
    let at = |args: &[&str]| -> Vec<std::ffi::OsString> {
        let mut all: Vec<std::ffi::OsString> = vec!["-C".into(), work.to_owned()];
        all.extend(args.iter().map(Into::into));
        all
    };
    run(
        &at(&[]),
        &["fetch", "-q", "--depth", "1", "--no-tags", "--no-recurse-submodules", "--", url, wanted],
        None,
        protocols,
    )
    .await
    .map_err(|e| match e {
        GitError::Failed(stderr) => fail("fetch", stderr),
        other => other,
    })?;
    run(&at(&[]), &["checkout", "-q", "--detach", "FETCH_HEAD"], None, protocols).await.map_err(|e| match e {
        GitError::Failed(stderr) => fail("check out", stderr),
        other => other,
    })?;
    let commit = run(&at(&[]), &["rev-parse", "HEAD"], None, protocols).await.map_err(|e| match e {
        GitError::Failed(stderr) => fail("read the commit of", stderr),
        other => other,
    })?;
    tokio::fs::remove_dir_all(dest.join(".git")).await?;
    Ok(commit.trim().to_string())
}

/// Runs `git <pre> -c ... <args> [path]`; its stdout, or [`GitError::Failed`] with the
/// end of its stderr.
async fn run(
    pre: &[std::ffi::OsString],
    args: &[&str],
    path: Option<&std::ffi::OsStr>,
    protocols: &str,
) -> Result<String, GitError> {
    let mut cmd = Command::new("git");
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
        .env("LC_ALL", "C")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env("GIT_ALLOW_PROTOCOL", protocols);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    cmd.args(pre)
        .args(["-c", "core.hooksPath=/dev/null", "-c", "protocol.allow=never"])
        .args(["-c", &format!("protocol.{protocols}.allow=always")])
        .args(["-c", "submodule.recurse=false", "-c", "core.fsmonitor=false", "-c", "advice.detachedHead=false"])
        .args(args);
    if let Some(path) = path {
        cmd.arg(path);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let output = match tokio::time::timeout(TIMEOUT, cmd.output()).await {
        Ok(output) => output?,
        Err(_) => return Err(GitError::Failed(format!("git took longer than {} s; stopped", TIMEOUT.as_secs()))),
    };
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text: String = stderr.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let tail: String = {
        let chars: Vec<char> = text.chars().collect();
        chars[chars.len().saturating_sub(400)..].iter().collect()
    };
    Err(GitError::Failed(if tail.is_empty() { format!("git exited with {}", output.status) } else { tail }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_unless_local_repositories_are_allowed() {
        assert!(check_url("https://github.com/acme/pack.git", false).is_ok());
        assert!(matches!(check_url("file:///srv/repo", false), Err(GitError::LocalOff(_))));
        assert!(matches!(check_url("/srv/repo", false), Err(GitError::LocalOff(_))));
        assert!(check_url("file:///srv/repo", true).is_ok());
        assert!(check_url("/srv/repo", true).is_ok());
        for bad in [
            "http://example.com/r.git",
            "ssh://git@example.com/r.git",
            "git@example.com:r.git",
            "ext::sh -c touch% /tmp/x",
            "-uhttps://x",
            "https://user:token@example.com/r.git",
            "https:///r.git",
            "file://host/srv/repo",
            "",
        ] {
            assert!(matches!(check_url(bad, true), Err(GitError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn refs_cannot_be_options_or_ranges() {
        for good in ["main", "v1.2.0", "release/2024", "0123456789abcdef0123456789abcdef01234567"] {
            assert!(check_ref(good).is_ok(), "{good}");
        }
        for bad in ["--upload-pack=x", "-x", "a..b", "a b", "HEAD@{1}", "x.lock", "a//b", "", "a/"] {
            assert!(check_ref(bad).is_err(), "{bad}");
        }
    }
}
