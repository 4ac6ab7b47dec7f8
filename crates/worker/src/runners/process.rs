//! Actions as child processes (`shell`, `python`), with the action protocol:
//!
//! - stdin: one JSON document `{"parameters", "secrets", "context"}`, then EOF — the only
//!   channel secret values take;
//! - environment: a clean one (the worker's own, with its database URL and keys, is not
//!   inherited) plus `ATTUNE_PARAM_<NAME>` for each non-secret parameter;
//! - its own process group, so a timeout (SIGTERM, then SIGKILL after a grace period) and
//!   the end of the action reach every process it started: none is left behind;
//! - stdout/stderr captured up to `max_output_bytes` each; the last stdout line that is a
//!   JSON object becomes `result.output`, whatever the exit code.

use std::path::{Path, PathBuf};
use std::time::Duration;

use attune_core::domain::RunnerType;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{Job, Outcome};
use crate::output::{capture, last_json_object};

/// Between SIGTERM and SIGKILL on timeout.
pub const GRACE: Duration = Duration::from_secs(5);
/// How much of stderr's end becomes a failed execution's `error`.
const ERROR_TAIL: usize = 2000;

/// Runs a python file or inline code: `run(params)` when the module defines it (its return
/// value, if any, is printed as the output line), else the module is a script. The
/// protocol document is read here and offered again as the script's stdin.
const PYTHON_WRAPPER: &str = r#"
import importlib.util, io, json, sys
raw = sys.stdin.read()
doc = json.loads(raw or "{}")
sys.stdin = io.StringIO(raw)
spec = importlib.util.spec_from_file_location("attune_action", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["attune_action"] = module
spec.loader.exec_module(module)
if callable(getattr(module, "run", None)):
    result = module.run(doc.get("parameters", {}))
    if result is not None:
        sys.stdout.flush()
        print(json.dumps(result, default=str))
"#;

/// The program to start for `job`, and a temporary file to keep alive while it runs.
fn command_for(job: &Job) -> Result<(Command, Option<tempfile::NamedTempFile>), String> {
    let actions_dir = job.pack_dir.as_ref().map(|p| p.join("actions"));
    let entry = |ep: &str| -> Result<PathBuf, String> {
        let dir =
            actions_dir.as_ref().ok_or_else(|| format!("entry_point {ep:?} needs a pack loaded from a directory"))?;
        let path = dir.join(ep);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("entry_point {} does not exist", path.display()))
        }
    };
    match job.runner_type {
        RunnerType::Shell => {
            if let Some(command) = &job.command {
                let mut cmd = Command::new("/bin/sh");
                cmd.arg("-c").arg(command);
                return Ok((cmd, None));
            }
            let path = entry(job.entry_point.as_deref().unwrap_or_default())?;
            let mut cmd = if is_executable(&path) { Command::new(&path) } else { Command::new("/bin/sh") };
            if !is_executable(&path) {
                cmd.arg(&path);
            }
            Ok((cmd, None))
        }
        RunnerType::Python => {
            let (path, temp) = match (&job.code, &job.entry_point) {
                (Some(code), _) => {
                    let mut file = tempfile::Builder::new()
                        .prefix("attune-action-")
                        .suffix(".py")
                        .tempfile()
                        .map_err(|e| e.to_string())?;
                    std::io::Write::write_all(&mut file, code.as_bytes()).map_err(|e| e.to_string())?;
                    (file.path().to_path_buf(), Some(file))
                }
                (None, Some(ep)) => (entry(ep)?, None),
                (None, None) => return Err("a python action needs code or entry_point".into()),
            };
            let mut cmd = Command::new("python3");
            cmd.arg("-u").arg("-c").arg(PYTHON_WRAPPER).arg(path);
            Ok((cmd, temp))
        }
        other => Err(format!("not a process runner: {other}")),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// `ATTUNE_PARAM_<NAME>` values: strings as they are, everything else as JSON.
fn param_env(job: &Job) -> Vec<(String, String)> {
    let Some(params) = job.parameters.as_object() else { return Vec::new() };
    params
        .iter()
        .filter(|(name, _)| !job.secret_names.contains(name))
        .map(|(name, value)| {
            let key: String =
                name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (format!("ATTUNE_PARAM_{key}"), value)
        })
        .collect()
}

/// The capture of a stream whose writers should be gone; given up after a short wait.
async fn finish_capture(task: tokio::task::JoinHandle<crate::output::Captured>) -> crate::output::Captured {
    let abort = task.abort_handle();
    match tokio::time::timeout(Duration::from_secs(2), task).await {
        Ok(captured) => captured.unwrap_or_default(),
        Err(_) => {
            abort.abort();
            tracing::warn!("an action's output stayed open after it ended (a process escaped its group); output cut");
            crate::output::Captured::default()
        }
    }
}

pub async fn run(job: &Job) -> Outcome {
    let (mut cmd, _temp) = match command_for(job) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e),
    };
    let workdir =
        job.pack_dir.as_ref().map(|p| p.join("actions")).filter(|d| d.is_dir()).unwrap_or_else(std::env::temp_dir);
    attune_core::child::isolate(&mut cmd, &workdir)
        .env("ATTUNE_EXECUTION_ID", job.execution_id.to_string())
        .env("ATTUNE_ACTION_REF", &job.action_ref)
        .env("ATTUNE_API_URL", &job.api_url)
        .envs(param_env(job));
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::failed(format!("cannot start the action: {e}")),
    };
    let group = child.id().map(|id| Pid::from_raw(id as i32));

    let doc = json!({
        "parameters": job.parameters,
        "secrets": job.secrets,
        "context": {
            "execution_id": job.execution_id,
            "action_ref": job.action_ref,
            "api_url": job.api_url,
            "api_token": job.api_token,
            "attempt": job.attempt,
        },
    });
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let limit = job.max_output_bytes;
    let stdout = tokio::spawn(capture(child.stdout.take().expect("stdout is piped"), limit));
    let stderr = tokio::spawn(capture(child.stderr.take().expect("stderr is piped"), limit));
    let writer = tokio::spawn(async move {
        // An action that never reads stdin closes it early; that is not an error.
        let _ = stdin.write_all(&serde_json::to_vec(&doc).expect("JSON serialises")).await;
        let _ = stdin.shutdown().await;
    });

    // Ends with the process, a timeout, or a cancel request; the last two stop the whole
    // process group: SIGTERM, then SIGKILL after the grace period.
    enum Ending {
        Exited,
        TimedOut,
        Canceled,
    }
    let (status, ending) = tokio::select! {
        status = child.wait() => (status.ok(), Ending::Exited),
        _ = tokio::time::sleep(job.timeout) => (None, Ending::TimedOut),
        _ = job.cancel.cancelled() => (None, Ending::Canceled),
    };
    let status = match ending {
        Ending::Exited => status,
        Ending::TimedOut | Ending::Canceled => {
            if let Some(g) = group {
                let _ = killpg(g, Signal::SIGTERM);
            }
            match tokio::time::timeout(GRACE, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    if let Some(g) = group {
                        let _ = killpg(g, Signal::SIGKILL);
                    }
                    child.wait().await.ok()
                }
            }
        }
    };
    let timed_out = matches!(ending, Ending::TimedOut);
    let canceled = matches!(ending, Ending::Canceled);
    // Whatever the action left running in its group goes with it.
    if let Some(g) = group {
        let _ = killpg(g, Signal::SIGKILL);
    }
    writer.abort();
    // A process that left the group (setsid) may still hold the pipes: do not wait for it.
    let out = finish_capture(stdout).await;
    let err = finish_capture(stderr).await;

    let stdout_text = out.text(limit);
    let output = last_json_object(&out.tail_text()).or_else(|| last_json_object(&stdout_text));
    let exit_code = status.and_then(|s| s.code());
    let succeeded = !timed_out && !canceled && exit_code == Some(0);
    let error = if canceled {
        Some("canceled on request".to_string())
    } else if timed_out {
        Some(format!("timed out after {} s", job.timeout.as_secs()))
    } else if succeeded {
        None
    } else {
        let tail = err.tail_text();
        let tail = tail.trim();
        let start = tail.len().saturating_sub(ERROR_TAIL);
        let start = (start..=tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
        let tail = &tail[start..];
        Some(match (exit_code, tail.is_empty()) {
            (Some(code), true) => format!("exited with code {code}"),
            (None, true) => "killed by a signal".to_string(),
            (_, false) => tail.to_string(),
        })
    };
    Outcome {
        succeeded,
        exit_code,
        stdout: stdout_text,
        stderr: err.text(limit),
        truncated: out.truncated(limit) || err.truncated(limit),
        output,
        error,
        failure_reason: if canceled { Some("canceled") } else { timed_out.then_some("timeout") },
    }
}
