//! Actions as child processes (`shell`, `python`, `node`), with the action protocol:
//! (python actions with `entry_point: file.py:function` run in a warm interpreter instead,
//! when the worker keeps them: [`super::warm`]; the same protocol, per call)
//!
//! - stdin: one JSON document `{"parameters", "secrets", "context"}` — the only channel
//!   secret values take. It is written, complete, into an anonymous in-memory file (a
//!   memfd; an unlinked temporary file where memfd is unavailable) *before* the action
//!   starts, and that file, rewound, is the action's stdin. So an action can rely on
//!   this: the whole document is already there when its first instruction runs, and
//!   reading stdin to its end yields exactly that document, then EOF (stdin is a regular
//!   file: it never blocks, and can be read again after a seek). The python and node
//!   runners check it anyway: a missing or cut document makes them refuse to run the action
//!   (exit code [`INPUT_REFUSED_CODE`]), and the execution fails with [`INPUT_NEVER_ARRIVED`];
//! - the pack's runtime environment ([`crate::envs`]), for python and node actions of a
//!   pack with a `requirements.txt` or a `package.json`: built on first use (an execution
//!   waits for it; a failed build fails it with the installer's error), bound read-only
//!   into the sandbox at its own path; python actions run with its `bin/python`, node
//!   actions get its `node_modules` as `NODE_PATH`;
//! - environment: a clean one (the worker's own, with its database URL and keys, is not
//!   inherited) plus `ATTUNE_PARAM_<NAME>` for each non-secret parameter: not for the
//!   action's secret parameters, nor any other the execution sealed, nor one whose value
//!   holds a secret value;
//! - a sandbox of its own ([`attune_core::child::Sandbox`], `sandbox.mode = namespaces`,
//!   the default): bubblewrap, as an unprivileged user, seeing a read-only system, its
//!   pack's directory and runtime environment (read-only, at their own paths), the
//!   `sandbox.bind` folders and a private scratch folder — its working directory, `$HOME`
//!   and `$TMPDIR`, where python and node code is written too, removed when the action
//!   ends — and nothing else of the host;
//!   no network when the action says `"network": false`; resource limits
//!   (`sandbox.limits`), and an `error` naming the limit a failed action most likely hit.
//!   No sandbox can be had (bubblewrap missing, say): the execution fails, unrun.
//!   With `sandbox.mode = none` the action runs unsandboxed, as the worker's user, in its
//!   pack's `actions` folder, as before (a warning says so once per process);
//! - its own process group, so a timeout (SIGTERM, then SIGKILL after a grace period) and
//!   the end of the action reach every process it started that stayed in it;
//! - its own PID namespace (the sandbox's; unsandboxed, [`attune_core::child::isolate`]'s
//!   where the kernel allows, which falls back to the process group alone and warns):
//!   whatever the action started — `setsid` and double-forked descendants included — is
//!   killed when the action ends, and everything is killed when the worker dies, however
//!   it dies: an action never runs on without the worker that reads its output and
//!   records its result. An action killed by signal N reports exit code 128+N there;
//! - stdout/stderr captured up to `max_output_bytes` each, every secret value of the job
//!   masked as it is read ([`crate::masking`]), so nothing kept — stdout, stderr, the
//!   `error` made from stderr's tail, the `result.output` parsed from stdout — holds one;
//!   the last stdout line that is a JSON object becomes `result.output`, whatever the
//!   exit code.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use attune_core::child::{limit_exceeded, Sandbox};
use attune_core::domain::RunnerType;
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use nix::sys::signal::Signal;
use serde_json::{json, Value};

use super::{Job, Outcome};
use crate::envs::{self, EnvError};
use crate::output::{capture, last_json_object};

/// Between SIGTERM and SIGKILL on timeout.
pub const GRACE: Duration = Duration::from_secs(5);
/// How much of stderr's end becomes a failed execution's `error`.
const ERROR_TAIL: usize = 2000;

/// The exit code of the python wrapper when the input document is missing or cut.
pub const INPUT_REFUSED_CODE: i32 = 97;
/// How the python wrapper's refusal begins on stderr.
const INPUT_REFUSED_MARK: &str = "attune: the action's input document";
/// A failed execution's `error` when the python wrapper refused to run the action.
pub const INPUT_NEVER_ARRIVED: &str = "the action's input document never arrived complete; it did not run";

/// Runs a python file or inline code: `run(params)` when the module defines it (its return
/// value, if any, is printed as the output line), else the module is a script. A second
/// argument names the function instead of `run` (`entry_point: file.py:function`); then the
/// module must define it. The
/// protocol document is read here and offered again as the script's stdin. A document
/// that is empty, not JSON, or not an object with `parameters` is refused before any of
/// the action's code runs: a message on stderr and exit code [`INPUT_REFUSED_CODE`].
pub(crate) const PYTHON_WRAPPER: &str = r#"
import importlib.util, io, json, sys
raw = sys.stdin.buffer.read()
try:
    doc = json.loads(raw)
except ValueError:
    doc = None
if not isinstance(doc, dict) or "parameters" not in doc:
    how = "is empty" if not raw.strip() else "is cut or malformed (%d bytes)" % len(raw)
    sys.stderr.write("attune: the action's input document " + how + "; the action did not run\n")
    sys.exit(97)
sys.stdin = io.StringIO(raw.decode("utf-8"))
try:
    import attune as _attune_helper
    _attune_helper._init(doc.get("context"))
except ImportError:
    pass
spec = importlib.util.spec_from_file_location("attune_action", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["attune_action"] = module
spec.loader.exec_module(module)
entry = getattr(module, sys.argv[2] if len(sys.argv) > 2 else "run", None)
if callable(entry):
    result = entry(doc.get("parameters", {}))
    if result is not None:
        sys.stdout.flush()
        print(json.dumps(result, default=str))
elif len(sys.argv) > 2:
    sys.stderr.write("attune: %s defines no function %s(params)\n" % (sys.argv[1], sys.argv[2]))
    sys.exit(2)
"#;

/// What to start: a program, its arguments, and variables of its own.
type Program = (OsString, Vec<OsString>, Vec<(&'static str, OsString)>);

/// `from attune import datastore` for python actions: written beside the action's code in
/// its scratch folder, which becomes its `PYTHONPATH` (installed nowhere else).
pub(crate) const PYTHON_HELPER: &str = include_str!("python/attune.py");

/// The node runner's wrapper (`node -e`): loads the action module, calls `run(params)`.
const NODE_WRAPPER: &str = include_str!("node/wrapper.js");

/// The program to start for `job`, with the pack's runtime environment `env` if it has
/// one; python and node code is written into the sandbox's scratch folder.
fn command_for(job: &Job, sandbox: &Sandbox, env: Option<&Path>) -> Result<Program, String> {
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
                return Ok(("/bin/sh".into(), vec!["-c".into(), command.into()], Vec::new()));
            }
            let path = entry(job.entry_point.as_deref().unwrap_or_default())?;
            if is_executable(&path) {
                Ok((path.into(), Vec::new(), Vec::new()))
            } else {
                Ok(("/bin/sh".into(), vec![path.into()], Vec::new()))
            }
        }
        RunnerType::Python => {
            let mut func = None;
            let path = match (&job.code, &job.entry_point) {
                (Some(code), _) => sandbox
                    .write_file("attune_action.py", code.as_bytes())
                    .map_err(|e| format!("cannot write the action's code: {e}"))?,
                // `file.py:function`: the warm form, run cold here (no pool, or no room).
                (None, Some(ep)) => match super::warm::split_entry(ep) {
                    Some((file, f)) => {
                        func = Some(f);
                        entry(file)?
                    }
                    None => entry(ep)?,
                },
                (None, None) => return Err("a python action needs code or entry_point".into()),
            };
            let helper = sandbox
                .write_file("attune.py", PYTHON_HELPER.as_bytes())
                .map_err(|e| format!("cannot write the attune helper module: {e}"))?;
            let lib = helper.parent().map(|d| d.as_os_str().to_owned()).unwrap_or_default();
            let mut args = vec!["-u".into(), "-c".into(), PYTHON_WRAPPER.into(), path.into()];
            args.extend(func.map(OsString::from));
            let python = env.map_or_else(|| "python3".into(), |env| envs::python::python(env).into());
            Ok((python, args, vec![("PYTHONPATH", lib)]))
        }
        RunnerType::Node => {
            let path = match (&job.code, &job.entry_point) {
                (Some(code), _) => sandbox
                    .write_file("attune_action.js", code.as_bytes())
                    .map_err(|e| format!("cannot write the action's code: {e}"))?,
                (None, Some(ep)) => entry(ep)?,
                (None, None) => return Err("a node action needs code or entry_point".into()),
            };
            // Two malloc arenas, not one per thread: each reserves 64 MiB of address space,
            // which the memory limit counts, on top of the ~730 MiB node reserves at start.
            let mut own = vec![("MALLOC_ARENA_MAX", "2".into())];
            own.extend(env.map(|env| ("NODE_PATH", envs::node::node_path(env).into_os_string())));
            Ok(("node".into(), vec!["-e".into(), NODE_WRAPPER.into(), path.into()], own))
        }
        other => Err(format!("not a process runner: {other}")),
    }
}

/// The protocol document in an anonymous file, complete and rewound: the action's stdin.
/// A memfd lives in memory only (the secrets in it never reach a disk); where memfd is
/// unavailable, an unlinked temporary file.
fn input_file(doc: &[u8]) -> std::io::Result<File> {
    use std::io::{Seek, Write};
    let mut file = match memfd_create(c"attune-action-input", MemFdCreateFlag::MFD_CLOEXEC) {
        Ok(fd) => File::from(fd),
        Err(_) => tempfile::tempfile()?,
    };
    file.write_all(doc)?;
    file.rewind()?;
    Ok(file)
}

/// The python or node wrapper refused to run the action: its input document was missing
/// or cut.
fn input_refused(runner_type: RunnerType, exit_code: Option<i32>, stderr: &[u8]) -> bool {
    matches!(runner_type, RunnerType::Python | RunnerType::Node)
        && exit_code == Some(INPUT_REFUSED_CODE)
        && stderr.starts_with(INPUT_REFUSED_MARK.as_bytes())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// `ATTUNE_PARAM_<NAME>` values: strings as they are, everything else as JSON. Secret
/// parameters are left out, and so is any parameter whose value holds a secret value (a
/// process's environment can be read by others: `/proc/<pid>/environ`); stdin has them.
pub(crate) fn param_env(job: &Job) -> Vec<(String, String)> {
    let Some(params) = job.parameters.as_object() else { return Vec::new() };
    params
        .iter()
        .filter(|(name, _)| !job.secret_names.contains(name))
        .filter_map(|(name, value)| {
            let key: String =
                name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            if job.masker.finds(&value) {
                tracing::warn!(
                    execution = job.execution_id,
                    parameter = %name,
                    "a parameter holds a secret value: it is given on stdin only, not in the environment"
                );
                return None;
            }
            Some((format!("ATTUNE_PARAM_{key}"), value))
        })
        .collect()
}

/// The capture of a stream whose writers should be gone; given up after a short wait.
pub(crate) async fn finish_capture(task: tokio::task::JoinHandle<crate::output::Captured>) -> crate::output::Captured {
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

/// The action protocol's stdin document of `job` (API.md, "Action protocol").
pub(crate) fn input_document(job: &Job) -> Value {
    json!({
        "parameters": job.parameters,
        "secrets": job.secrets,
        "context": {
            "execution_id": job.execution_id,
            "action_ref": job.action_ref,
            "api_url": job.api_url,
            "api_token": job.api_token,
            "attempt": job.attempt,
        },
    })
}

/// The end of a failed action's stderr that becomes its `error`: trimmed, at most
/// [`ERROR_TAIL`] bytes (cut at a character boundary).
pub(crate) fn error_tail(stderr: &crate::output::Captured) -> String {
    let tail = stderr.tail_text();
    let tail = tail.trim();
    let start = tail.len().saturating_sub(ERROR_TAIL);
    let start = (start..=tail.len()).find(|i| tail.is_char_boundary(*i)).unwrap_or(tail.len());
    tail[start..].to_string()
}

/// The pack's runtime environment for the job's runner (built on first use), if it has one.
pub(crate) async fn runtime_env(job: &Job) -> Result<Option<PathBuf>, Outcome> {
    let env = match job.runner_type {
        RunnerType::Python => envs::python::env_for(job).await,
        RunnerType::Node => envs::node::env_for(job).await,
        _ => return Ok(None),
    };
    env.map_err(|e| match e {
        EnvError::Canceled => Outcome::canceled(),
        EnvError::Failed(why) => Outcome::failed(why),
    })
}

/// Runs `job`: in a warm interpreter when it is a python action whose `entry_point` names
/// a function (`file.py:run`) and the worker keeps warm interpreters ([`super::warm`]),
/// else in a process of its own.
pub async fn run(job: &Job) -> Outcome {
    let warm_form = job.runner_type == RunnerType::Python
        && job.code.is_none()
        && job.entry_point.as_deref().and_then(super::warm::split_entry).is_some();
    match super::warm::global() {
        Some(pool) if warm_form => pool.run(job).await,
        _ => run_cold(job).await,
    }
}

/// Runs `job` in a process of its own, started for it.
pub async fn run_cold(job: &Job) -> Outcome {
    let env = match runtime_env(job).await {
        Ok(env) => env,
        Err(outcome) => return outcome,
    };
    let read_only: Vec<PathBuf> = job.pack_dir.iter().chain(&env).cloned().collect();
    // Dropped when this function returns: the scratch folder goes with it.
    let mut sandbox = match Sandbox::prepare(&job.sandbox, job.network, &read_only) {
        Ok(s) => s,
        Err(e) => return Outcome::failed(format!("cannot sandbox the action, so it did not run: {e}")),
    };
    let (program, args, own_env) = match command_for(job, &sandbox, env.as_deref()) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(e),
    };
    let doc = input_document(job);
    // The whole document is in place before the action starts: a worker that dies from
    // here on never leaves an action running with half of its input.
    let input = match input_file(&serde_json::to_vec(&doc).expect("JSON serialises")) {
        Ok(f) => f,
        Err(e) => return Outcome::failed(format!("cannot prepare the action's input: {e}")),
    };
    // Unsandboxed only: a sandboxed action starts in its scratch folder.
    let workdir =
        job.pack_dir.as_ref().map(|p| p.join("actions")).filter(|d| d.is_dir()).unwrap_or_else(std::env::temp_dir);
    let mut cmd = sandbox.command(program, args, &workdir);
    cmd.stdin(input)
        .env("ATTUNE_EXECUTION_ID", job.execution_id.to_string())
        .env("ATTUNE_ACTION_REF", &job.action_ref)
        .env("ATTUNE_API_URL", &job.api_url)
        .envs(param_env(job))
        .envs(own_env);
    // Spawned right here, on this async task's thread — a runtime worker thread, alive as
    // long as the runtime — never from `spawn_blocking`: the child's death signal
    // (PR_SET_PDEATHSIG) fires when the thread that forked it ends, not only the worker.
    let spawned = sandbox.spawn(&mut cmd);
    drop(cmd); // our copy of the input file
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Outcome::failed(format!("cannot start the action: {e}")),
    };
    if let (Some(started), Some(pid)) = (&job.started, child.id()) {
        started.report(job.execution_id, job.attempt, pid);
    }

    let limit = job.max_output_bytes;
    let stdout = tokio::spawn(capture(child.stdout.take().expect("stdout is piped"), limit, job.masker.clone()));
    let stderr = tokio::spawn(capture(child.stderr.take().expect("stderr is piped"), limit, job.masker.clone()));

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
            sandbox.signal(Signal::SIGTERM);
            match tokio::time::timeout(GRACE, child.wait()).await {
                Ok(s) => s.ok(),
                Err(_) => {
                    sandbox.signal(Signal::SIGKILL);
                    child.wait().await.ok()
                }
            }
        }
    };
    let timed_out = matches!(ending, Ending::TimedOut);
    let canceled = matches!(ending, Ending::Canceled);
    // Whatever the action left running goes with it (in a PID namespace of its own, it
    // is going already: the namespace ends with the action).
    sandbox.signal(Signal::SIGKILL);
    // Without a PID namespace, a process that left the group (setsid) may still hold the
    // pipes: do not wait for it.
    // Both masked: everything below is made from masked text only.
    let out = finish_capture(stdout).await;
    let err = finish_capture(stderr).await;

    let stdout_text = out.text(limit);
    let output = last_json_object(&out.tail_text()).or_else(|| last_json_object(&stdout_text));
    let exit_code = status.and_then(|s| s.code());
    let succeeded = !timed_out && !canceled && exit_code == Some(0);
    let mut failure_reason = if canceled { Some("canceled") } else { timed_out.then_some("timeout") };
    let error = if canceled {
        Some("canceled on request".to_string())
    } else if timed_out {
        Some(format!("timed out after {} s", job.timeout.as_secs()))
    } else if succeeded {
        None
    } else if input_refused(job.runner_type, exit_code, &err.head) {
        Some(INPUT_NEVER_ARRIVED.to_string())
    } else {
        let tail = error_tail(&err);
        let tail = tail.as_str();
        let exceeded = sandbox.limits().and_then(|limits| {
            let head = String::from_utf8_lossy(&err.head);
            limit_exceeded(limits, exit_code, tail).or_else(|| limit_exceeded(limits, None, &head))
        });
        Some(match (exceeded, exit_code, tail.is_empty()) {
            (Some(limit), _, true) => {
                failure_reason = Some("resource_limit");
                format!("the action {limit}")
            }
            (Some(limit), _, false) => {
                failure_reason = Some("resource_limit");
                format!("the action {limit}: {tail}")
            }
            (None, Some(code), true) => format!("exited with code {code}"),
            (None, None, true) => "killed by a signal".to_string(),
            (None, _, false) => tail.to_string(),
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
        failure_reason,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::runners::tests::job;

    fn python_job(code: &str, parameters: Value) -> Job {
        let mut job = job("p.py", parameters);
        job.runner_type = RunnerType::Python;
        job.code = Some(code.to_string());
        job
    }

    /// The python wrapper run directly on `code`, with `stdin` as its input document.
    fn wrapper(code: &str, stdin: &[u8]) -> std::process::Output {
        let mut file = tempfile::Builder::new().suffix(".py").tempfile().unwrap();
        file.write_all(code.as_bytes()).unwrap();
        let mut child = Command::new("python3")
            .args(["-u", "-c", PYTHON_WRAPPER])
            .arg(file.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    #[tokio::test]
    async fn python_parameters_arrive() {
        let code = "import sys, json\ndef run(params):\n    return {'got': params['name'], 'stdin': json.load(sys.stdin)['parameters']}\n";
        let out = run(&python_job(code, json!({"name": "ada"}))).await;
        assert!(out.succeeded, "{out:?}");
        assert_eq!(out.output, Some(json!({"got": "ada", "stdin": {"name": "ada"}})));
    }

    #[tokio::test]
    async fn shell_stdin_is_the_whole_document_and_secrets_stay_out_of_the_environment() {
        let mut job = job("p.sh", json!({"name": "ada", "token": "s3cret"}));
        job.runner_type = RunnerType::Shell;
        job.secret_names = vec!["token".into()];
        job.command = Some("cat; echo; env | grep -c s3cret || true".into());
        let out = run(&job).await;
        assert!(out.succeeded, "{out:?}");
        let mut lines = out.stdout.lines();
        let doc: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(doc["parameters"], json!({"name": "ada", "token": "s3cret"}));
        assert_eq!(doc["context"]["execution_id"], 1);
        assert_eq!(lines.next(), Some("0"), "{}", out.stdout);
    }

    #[tokio::test]
    async fn secrets_are_masked_in_stdout_stderr_error_and_output_even_split_across_writes() {
        let mut job = job("p.sh", json!({"token": "tok-7f3a9c", "note": "uses dbpass-51e2 here", "plain": "ok"}));
        job.runner_type = RunnerType::Shell;
        // `token` is sealed but not among the action's declared secret parameters.
        job.secret_names = vec!["token".into()];
        job.masker = crate::masking::Masker::new(&[json!("tok-7f3a9c"), json!("dbpass-51e2")]).unwrap();
        job.command = Some(
            r#"printf 'whole tok-7f3a9c\n'; printf 'split dbpa'; sleep 0.2; printf 'ss-51e2\n'
               printf 'err tok-7' >&2; sleep 0.2; printf 'f3a9c\n' >&2
               printf '{"t": "tok-7f3a9c"}\n'
               env | grep -c -e tok-7f3a9c -e dbpass-51e2 -e ATTUNE_PARAM_NOTE -e ATTUNE_PARAM_TOKEN >&2
               printf '%s' "$ATTUNE_PARAM_PLAIN" >&2; exit 1"#
                .into(),
        );
        let out = run(&job).await;
        assert_eq!(out.exit_code, Some(1), "{out:?}");
        assert_eq!(out.stdout, "whole ********\nsplit ********\n{\"t\": \"********\"}\n");
        assert_eq!(out.stderr, "err ********\n0\nok");
        assert_eq!(out.error.as_deref(), Some("err ********\n0\nok"));
        assert_eq!(out.output, Some(json!({"t": "********"})));
    }

    #[test]
    fn the_python_wrapper_refuses_a_missing_or_cut_document() {
        let code = "open('/dev/stderr', 'w').write('the action ran')\n";
        let whole = br#"{"parameters": {"a": 1}, "secrets": {}, "context": {}}"#;
        let ran = wrapper(code, whole);
        assert_eq!(ran.status.code(), Some(0), "{ran:?}");
        assert_eq!(String::from_utf8_lossy(&ran.stderr), "the action ran");
        for bad in
            [&b""[..], b"  \n", &whole[..20], b"[1, 2]", b"{\"secrets\": {}}", b"{\"parameters\": {\"a\": \xe2\x82"]
        {
            let out = wrapper(code, bad);
            assert_eq!(out.status.code(), Some(INPUT_REFUSED_CODE), "{bad:?}: {out:?}");
            assert!(input_refused(RunnerType::Python, out.status.code(), &out.stderr), "{out:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("the action did not run") && !stderr.contains("the action ran"), "{stderr}");
        }
        // The same exit code from an action itself, or from a shell action, is not a refusal.
        assert!(!input_refused(RunnerType::Python, Some(INPUT_REFUSED_CODE), b"Traceback ..."));
        assert!(!input_refused(RunnerType::Shell, Some(INPUT_REFUSED_CODE), INPUT_REFUSED_MARK.as_bytes()));
    }

    fn node_job(code: &str, parameters: Value) -> Job {
        let mut job = job("p.js", parameters);
        job.runner_type = RunnerType::Node;
        job.code = Some(code.to_string());
        job
    }

    #[tokio::test]
    async fn node_run_is_awaited_with_the_parameters_and_stdin_stays_whole() {
        let code = "const fs = require('fs');\nexports.run = async (params) => {\n  await new Promise((r) => setTimeout(r, 20));\n  \
                    return {got: params.name, stdin: JSON.parse(fs.readFileSync(0, 'utf8')).parameters, big: 2n ** 70n};\n};\n\
                    setInterval(() => {}, 1000); // a handle left open does not keep it running\n";
        let out = run(&node_job(code, json!({"name": "ada"}))).await;
        assert!(out.succeeded, "{out:?}");
        assert_eq!(out.output, Some(json!({"got": "ada", "stdin": {"name": "ada"}, "big": "1180591620717411303424"})));
    }

    #[tokio::test]
    async fn node_failures_and_scripts() {
        let out = run(&node_job("exports.run = async () => { throw new Error('no such widget'); };", json!({}))).await;
        assert_eq!(out.exit_code, Some(1), "{out:?}");
        assert!(out.error.as_deref().unwrap_or_default().starts_with("Error: no such widget"), "{out:?}");
        let script = "console.log(JSON.stringify({n: Number(process.env.ATTUNE_PARAM_N) + 1})); process.exitCode = 3;";
        let out = run(&node_job(script, json!({"n": 41}))).await;
        assert_eq!((out.exit_code, out.output.clone()), (Some(3), Some(json!({"n": 42}))), "{out:?}");
        let missing = run(&node_job("exports.run = () => require('left-pad')", json!({}))).await;
        assert!(missing.error.as_deref().unwrap_or_default().contains("Cannot find module 'left-pad'"), "{missing:?}");
    }

    #[test]
    fn the_node_wrapper_refuses_a_missing_or_cut_document() {
        let mut file = tempfile::Builder::new().suffix(".js").tempfile().unwrap();
        file.write_all(b"process.stderr.write('the action ran');").unwrap();
        let node = |stdin: &[u8]| {
            let mut input = tempfile::tempfile().unwrap();
            input.write_all(stdin).unwrap();
            std::io::Seek::rewind(&mut input).unwrap();
            Command::new("node").args(["-e", NODE_WRAPPER]).arg(file.path()).stdin(input).output().unwrap()
        };
        let ran = node(br#"{"parameters": {}, "context": {}}"#);
        assert_eq!((ran.status.code(), ran.stderr.as_slice()), (Some(0), &b"the action ran"[..]), "{ran:?}");
        for bad in
            [&b""[..], b"  \n", b"{\"parameters\": {", b"[1]", b"{\"secrets\": {}}", b"{\"parameters\": \"\xe2\x82\"}"]
        {
            let out = node(bad);
            assert_eq!(out.status.code(), Some(INPUT_REFUSED_CODE), "{bad:?}: {out:?}");
            assert!(input_refused(RunnerType::Node, out.status.code(), &out.stderr), "{out:?}");
        }
    }

    #[tokio::test]
    async fn a_timeout_reaches_the_action_with_sigterm_first() {
        let mut job = job("p.sh", json!({}));
        job.runner_type = RunnerType::Shell;
        job.timeout = Duration::from_millis(300);
        job.command = Some("trap 'echo got-term; exit 3' TERM; sleep 30 & wait".into());
        let started = std::time::Instant::now();
        let out = run(&job).await;
        assert_eq!(out.failure_reason, Some("timeout"), "{out:?}");
        assert_eq!(out.stdout, "got-term\n", "{out:?}");
        assert!(started.elapsed() < GRACE, "SIGTERM ended it, not the SIGKILL after the grace period");
    }
}
