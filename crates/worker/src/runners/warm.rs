//! Warm python interpreters: python actions whose `entry_point` names a function
//! (`module.py:run`) run in a pre-started interpreter that imported the module once and
//! calls the function per execution, instead of a new interpreter per execution.
//!
//! - **Pool**: interpreters kept per (tenant, pack, pack version, action, entry point,
//!   runtime environment, network): never shared across tenants or actions. At most
//!   `worker.warm_python_pool` live per worker (idle or busy); when all are busy, an
//!   execution runs cold (a fresh interpreter, as before); when the pool is full of idle
//!   interpreters of other actions, the longest idle one is retired to make room. An
//!   interpreter idle for `worker.warm_python_idle_seconds` is retired. `0` turns warm
//!   interpreters off: such actions then always run cold, with the same result.
//! - **Sandbox**: each interpreter runs in a sandbox of its own ([`Sandbox`]), as a cold
//!   action would, for its whole life (its scratch folder lives as long as it does).
//! - **Per execution**: the input document (parameters and secrets) goes over the
//!   interpreter's stdin pipe, one JSON line, never the environment; the execution's
//!   stdout and stderr are two FIFOs made for it in the scratch folder, which the
//!   interpreter puts on its fds 1 and 2 for the call only (between calls they point at
//!   `/dev/null`): captured, bounded and masked as a cold action's. The interpreter answers
//!   on its own stdout (`{"started"}`, then `{"exit", "cpu"}`), a channel apart.
//! - **Replacement**: an interpreter that dies during a call (crash, `os._exit`, a signal),
//!   runs past the timeout, is canceled, or hits a resource limit is killed (its whole
//!   sandbox) and not reused; the execution fails with the reason, the next one gets a
//!   new interpreter. CPU seconds (`sandbox.limits.cpu_seconds`) count per process: an
//!   interpreter that used half of them is retired rather than let it die mid-call.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use attune_core::child::{limit_exceeded, Sandbox};
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use super::process::{self, error_tail, finish_capture, input_document, param_env, GRACE};
use super::{Job, Outcome};
use crate::masking::Masker;
use crate::output::{capture, last_json_object, Captured};

/// The interpreter's program (`python -u -c`): imports the module, then serves calls.
const SERVER: &str = include_str!("python/warm.py");

/// How the pool is sized: the worker's `warm_python_pool` and `warm_python_idle_seconds`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmConfig {
    /// Live interpreters per worker, at most; 0: no warm interpreters.
    pub max: usize,
    /// An interpreter idle this long is retired.
    pub idle: Duration,
}

/// `file.py:function` of a python `entry_point`: the file and the function, when the
/// entry point names one (a python identifier after the last `:`).
pub fn split_entry(entry_point: &str) -> Option<(&str, &str)> {
    attune_core::pack::loader::python_entry_function(entry_point)
}

/// The worker's pool, once [`configure`]d.
static POOL: OnceLock<Arc<Pool>> = OnceLock::new();

/// Sets the worker's pool (the first call wins: one per process).
pub fn configure(config: WarmConfig) {
    let _ = POOL.set(Pool::new(config));
}

/// The worker's pool, if there is one and it may hold interpreters.
pub fn global() -> Option<&'static Arc<Pool>> {
    POOL.get().filter(|p| p.config.max > 0)
}

/// What an interpreter is kept for: nothing of one of these is ever used for another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tenant_id: i64,
    pack_ref: Option<String>,
    pack_version: Option<String>,
    action_ref: String,
    entry_point: String,
    pack_dir: Option<PathBuf>,
    env: Option<PathBuf>,
    network: bool,
}

struct Idle {
    key: Key,
    interp: Interp,
    since: Instant,
}

#[derive(Default)]
struct State {
    idle: Vec<Idle>,
    /// Interpreters alive: idle ones and those serving an execution.
    live: usize,
    reaper: bool,
}

/// Warm interpreters of one worker.
pub struct Pool {
    config: WarmConfig,
    state: Mutex<State>,
}

/// A running interpreter, in its sandbox.
struct Interp {
    child: Child,
    ctl_in: ChildStdin,
    ctl_out: BufReader<ChildStdout>,
    /// The interpreter's own stderr (import errors, a crash's last words).
    own_err: Option<tokio::task::JoinHandle<Captured>>,
    pid: Option<u32>,
    calls: u64,
    cpu_seconds: f64,
    /// Last: dropped after the process is killed, removing the scratch folder.
    sandbox: Sandbox,
}

impl Drop for Interp {
    fn drop(&mut self) {
        // The whole sandbox: the interpreter and whatever it started.
        self.sandbox.signal(Signal::SIGKILL);
    }
}

/// An interpreter taken from the pool: back into it with [`Pool::give_back`], else killed
/// (and counted out) when dropped.
struct Lease {
    pool: Arc<Pool>,
    key: Key,
    interp: Option<Interp>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(interp) = self.interp.take() {
            drop(interp);
            self.pool.lock().live -= 1;
        }
    }
}

impl Pool {
    pub fn new(config: WarmConfig) -> Arc<Pool> {
        Arc::new(Pool { config, state: Mutex::new(State::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Interpreters alive (idle or serving).
    pub fn live(&self) -> usize {
        self.lock().live
    }

    /// Interpreters waiting for an execution.
    pub fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    /// Retires the interpreters idle for longer than the configured time.
    pub fn retire_idle(&self) {
        let expired: Vec<Idle> = {
            let mut state = self.lock();
            let (expired, kept) =
                std::mem::take(&mut state.idle).into_iter().partition(|i| i.since.elapsed() >= self.config.idle);
            state.idle = kept;
            state.live -= expired.len();
            expired
        };
        drop(expired);
    }

    /// An idle interpreter of `key`, else the right to start one (`Ok(None)`), else
    /// `Err(())`: the pool is full of busy interpreters.
    fn take(self: &Arc<Self>, key: &Key) -> Result<Option<Interp>, ()> {
        let mut evicted = None;
        let taken = {
            let mut state = self.lock();
            if let Some(at) = state.idle.iter().rposition(|i| &i.key == key) {
                Ok(Some(state.idle.remove(at).interp))
            } else if state.live < self.config.max {
                state.live += 1;
                Ok(None)
            } else if !state.idle.is_empty() {
                // Full, but some interpreters of other actions idle: the longest idle goes.
                let at = (0..state.idle.len()).min_by_key(|&i| state.idle[i].since).unwrap_or(0);
                evicted = Some(state.idle.remove(at));
                Ok(None)
            } else {
                Err(())
            }
        };
        drop(evicted);
        taken
    }

    fn give_back(&self, mut lease: Lease) {
        if let Some(interp) = lease.interp.take() {
            self.lock().idle.push(Idle { key: lease.key.clone(), interp, since: Instant::now() });
        }
    }

    /// A task retiring idle interpreters, started with the first warm execution.
    fn start_reaper(self: &Arc<Self>) {
        {
            let mut state = self.lock();
            if state.reaper {
                return;
            }
            state.reaper = true;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        let every = (self.config.idle / 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match pool.upgrade() {
                    Some(pool) => pool.retire_idle(),
                    None => return,
                }
            }
        });
    }

    /// Runs `job` (a python action whose entry point names a function) in a warm
    /// interpreter; cold when the pool has no room.
    pub async fn run(self: &Arc<Self>, job: &Job) -> Outcome {
        let Some((file, func)) = job.entry_point.as_deref().and_then(split_entry) else {
            return process::run_cold(job).await;
        };
        self.start_reaper();
        self.retire_idle();
        let env = match process::runtime_env(job).await {
            Ok(env) => env,
            Err(outcome) => return outcome,
        };
        let key = Key {
            tenant_id: job.tenant_id,
            pack_ref: job.pack_ref.clone(),
            pack_version: job.pack_version.clone(),
            action_ref: job.action_ref.clone(),
            entry_point: job.entry_point.clone().unwrap_or_default(),
            pack_dir: job.pack_dir.clone(),
            env: env.clone(),
            network: job.network,
        };
        let interp = match self.take(&key) {
            Ok(Some(interp)) => interp,
            // Counted in `live` already; counted out again if it does not start.
            Ok(None) => match start(job, file, func, env.as_deref()).await {
                Ok(interp) => interp,
                Err(outcome) => {
                    self.lock().live -= 1;
                    return outcome.masked(&job.masker);
                }
            },
            Err(()) => return process::run_cold(job).await,
        };
        let mut lease = Lease { pool: self.clone(), key, interp: Some(interp) };
        let (outcome, healthy) = call(lease.interp.as_mut().expect("leased"), job).await;
        if healthy {
            self.give_back(lease);
        } else {
            drop(lease);
        }
        outcome.masked(&job.masker)
    }
}

/// Starts an interpreter for `job`'s `file` and waits until it imported the module.
async fn start(job: &Job, file: &str, func: &str, env: Option<&std::path::Path>) -> Result<Interp, Outcome> {
    let Some(actions_dir) = job.pack_dir.as_ref().map(|p| p.join("actions")) else {
        return Err(Outcome::failed(format!("entry_point {file:?} needs a pack loaded from a directory")));
    };
    let path = actions_dir.join(file);
    if !path.is_file() {
        return Err(Outcome::failed(format!("entry_point {} does not exist", path.display())));
    }
    let read_only: Vec<PathBuf> = job.pack_dir.iter().cloned().chain(env.map(|e| e.to_path_buf())).collect();
    let mut sandbox = Sandbox::prepare(&job.sandbox, job.network, &read_only)
        .map_err(|e| Outcome::failed(format!("cannot sandbox the action, so it did not run: {e}")))?;
    let helper = sandbox
        .write_file("attune.py", process::PYTHON_HELPER.as_bytes())
        .map_err(|e| Outcome::failed(format!("cannot write the attune helper module: {e}")))?;
    let lib = helper.parent().map(|d| d.as_os_str().to_owned()).unwrap_or_default();
    let python: std::ffi::OsString =
        env.map_or_else(|| "python3".into(), |env| crate::envs::python::python(env).into_os_string());
    let workdir = if actions_dir.is_dir() { actions_dir.clone() } else { std::env::temp_dir() };
    let args: Vec<std::ffi::OsString> =
        vec!["-u".into(), "-c".into(), SERVER.into(), path.into_os_string(), func.into()];
    let mut cmd = sandbox.command(python, args, &workdir);
    cmd.env("ATTUNE_ACTION_REF", &job.action_ref).env("ATTUNE_API_URL", &job.api_url).env("PYTHONPATH", lib);
    // From this async task's thread (see `attune_core::child`: the death signal follows it).
    let mut child = sandbox.spawn(&mut cmd).map_err(|e| Outcome::failed(format!("cannot start the action: {e}")))?;
    drop(cmd);
    let ctl_in = child.stdin.take().expect("stdin is piped");
    let ctl_out = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let own_err = tokio::spawn(capture(child.stderr.take().expect("stderr is piped"), 64 * 1024, Masker::default()));
    let mut interp =
        Interp { pid: child.id(), child, ctl_in, ctl_out, own_err: Some(own_err), calls: 0, cpu_seconds: 0.0, sandbox };
    // The import counts against the first execution's timeout.
    let ready = tokio::select! {
        line = read_answer(&mut interp.ctl_out) => line,
        _ = tokio::time::sleep(job.timeout) => return Err(timed_out(job)),
        _ = job.cancel.cancelled() => return Err(Outcome::canceled()),
    };
    match ready {
        Some(answer) if answer["ready"] == json!(true) => Ok(interp),
        _ => Err(died(&mut interp, "while importing the action's module", &Captured::default()).await),
    }
}

/// The interpreter's next answer line, None at EOF (it died) or on garbage.
async fn read_answer(out: &mut BufReader<ChildStdout>) -> Option<Value> {
    let mut line = String::new();
    match out.read_line(&mut line).await {
        Ok(0) | Err(_) => None,
        Ok(_) => serde_json::from_str(&line).ok(),
    }
}

fn timed_out(job: &Job) -> Outcome {
    let mut out = Outcome::failed(format!("timed out after {} s", job.timeout.as_secs()));
    out.failure_reason = Some("timeout");
    out
}

/// The outcome of an interpreter that ended when it should not have: its exit code, the
/// end of its stderr (the call's `err`, else its own).
async fn died(interp: &mut Interp, when: &str, err: &Captured) -> Outcome {
    interp.sandbox.signal(Signal::SIGKILL);
    let status = interp.child.wait().await.ok();
    let exit_code = status.and_then(|s| s.code());
    let own = match interp.own_err.take() {
        Some(task) => finish_capture(task).await,
        None => Captured::default(),
    };
    let mut tail = error_tail(err);
    if tail.is_empty() {
        tail = error_tail(&own);
    }
    let how = match exit_code {
        Some(code) => format!("exit code {code}"),
        None => "killed by a signal".to_string(),
    };
    let mut error = format!("the warm python interpreter ended {when} ({how}); a new one serves the next execution");
    if !tail.is_empty() {
        error = format!("{error}: {tail}");
    }
    let mut out = Outcome::failed(error);
    out.exit_code = exit_code;
    out.stderr = String::from_utf8_lossy(&err.head).into_owned();
    if let Some(limit) = interp.sandbox.limits().and_then(|l| limit_exceeded(l, exit_code, &tail)) {
        out.failure_reason = Some("resource_limit");
        out.error = Some(format!("the action {limit}: {tail}"));
    }
    out
}

/// One execution in `interp`: the outcome, and whether the interpreter may serve again.
async fn call(interp: &mut Interp, job: &Job) -> (Outcome, bool) {
    interp.calls += 1;
    let scratch = interp.sandbox.scratch().to_path_buf();
    let out_path = scratch.join(format!(".attune-call-{}.out", interp.calls));
    let err_path = scratch.join(format!(".attune-call-{}.err", interp.calls));
    let fifos = Fifos(vec![out_path.clone(), err_path.clone()]);
    let receivers = (|| -> std::io::Result<_> {
        for path in &fifos.0 {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
            // Written by the sandbox's user; read by the worker (its owner) alone.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o622))?;
        }
        let open = |p: &PathBuf| tokio::net::unix::pipe::OpenOptions::new().open_receiver(p);
        Ok((open(&out_path)?, open(&err_path)?))
    })();
    let (out_rx, err_rx) = match receivers {
        Ok(r) => r,
        Err(e) => return (Outcome::failed(format!("cannot prepare the action's output: {e}")), false),
    };
    let env: serde_json::Map<String, Value> = param_env(job)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .chain([("ATTUNE_EXECUTION_ID".to_string(), Value::String(job.execution_id.to_string()))])
        .collect();
    let request = json!({"out": out_path, "err": err_path, "doc": input_document(job), "env": env});
    let mut line = serde_json::to_vec(&request).expect("JSON serialises");
    line.push(b'\n');
    let sent = async {
        interp.ctl_in.write_all(&line).await?;
        interp.ctl_in.flush().await
    };
    if sent.await.is_err() || read_answer(&mut interp.ctl_out).await.is_none_or(|a| a["started"] != json!(true)) {
        return (died(interp, "before the execution started", &Captured::default()).await.masked(&job.masker), false);
    }
    if let (Some(started), Some(pid)) = (&job.started, interp.pid) {
        started.report(job.execution_id, job.attempt, pid);
    }
    let limit = job.max_output_bytes;
    let stdout = tokio::spawn(capture(out_rx, limit, job.masker.clone()));
    let stderr = tokio::spawn(capture(err_rx, limit, job.masker.clone()));

    enum Ending {
        Answered(Value),
        Died,
        TimedOut,
        Canceled,
    }
    let ending = tokio::select! {
        answer = read_answer(&mut interp.ctl_out) => answer.map_or(Ending::Died, Ending::Answered),
        _ = tokio::time::sleep(job.timeout) => Ending::TimedOut,
        _ = job.cancel.cancelled() => Ending::Canceled,
    };
    if matches!(ending, Ending::TimedOut | Ending::Canceled) {
        // The work is the interpreter's: it goes, SIGTERM first as for a cold action.
        interp.sandbox.signal(Signal::SIGTERM);
        if tokio::time::timeout(GRACE, interp.child.wait()).await.is_err() {
            interp.sandbox.signal(Signal::SIGKILL);
            let _ = interp.child.wait().await;
        }
        interp.sandbox.signal(Signal::SIGKILL);
    }
    let out = finish_capture(stdout).await;
    let err = finish_capture(stderr).await;
    let answered = matches!(ending, Ending::Answered(_));
    let mut outcome = match ending {
        Ending::TimedOut => timed_out(job),
        Ending::Canceled => Outcome::canceled(),
        Ending::Died => died(interp, "during the execution", &err).await,
        Ending::Answered(answer) => {
            let code = answer["exit"].as_i64().map(|c| c as i32);
            interp.cpu_seconds = answer["cpu"].as_f64().unwrap_or(0.0);
            let succeeded = code == Some(0);
            let mut outcome = Outcome { succeeded, exit_code: code, ..Outcome::failed("") };
            outcome.error = None;
            if !succeeded {
                let tail = error_tail(&err);
                let exceeded = interp.sandbox.limits().and_then(|l| limit_exceeded(l, code, &tail));
                outcome.error = Some(match (exceeded, code, tail.is_empty()) {
                    (Some(limit), _, _) => {
                        outcome.failure_reason = Some("resource_limit");
                        format!("the action {limit}: {tail}")
                    }
                    (None, Some(code), true) => format!("exited with code {code}"),
                    (None, _, true) => "failed".to_string(),
                    (None, _, false) => tail,
                });
            }
            outcome
        }
    };
    let stdout_text = out.text(limit);
    outcome.output = last_json_object(&out.tail_text()).or_else(|| last_json_object(&stdout_text));
    outcome.stdout = stdout_text;
    outcome.stderr = err.text(limit);
    outcome.truncated = out.truncated(limit) || err.truncated(limit);
    let cpu_budget = interp.sandbox.limits().map(|l| l.cpu_seconds as f64 / 2.0);
    let healthy = answered
        && outcome.failure_reason.is_none()
        && !cpu_budget.is_some_and(|budget| interp.cpu_seconds >= budget)
        && interp.child.try_wait().is_ok_and(|s| s.is_none());
    (outcome, healthy)
}

/// The FIFOs of one call, removed when it is over.
struct Fifos(Vec<PathBuf>);

impl Drop for Fifos {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use attune_core::domain::RunnerType;

    use super::*;
    use crate::runners::tests::job;

    /// The action of these tests: counts its calls in module state, says which import of
    /// the module it runs in (`boot`), and does what its parameters ask.
    const ACTION: &str = r#"
import os, sys, time, uuid
BOOT = uuid.uuid4().hex
CALLS = 0

def run(params):
    global CALLS
    CALLS += 1
    print("call", params.get("n"))
    sys.stderr.write("err %s\n" % params.get("n"))
    if params.get("crash"):
        os._exit(3)
    if params.get("sleep"):
        time.sleep(params["sleep"])
    if params.get("fail"):
        raise ValueError("no such widget")
    return {"calls": CALLS, "boot": BOOT, "n": params.get("n"), "token": params.get("token"),
            "env_token": [k for k, v in os.environ.items() if "tok-" in v],
            "param_env": os.environ.get("ATTUNE_PARAM_N")}

def other(params):
    return {"other": True}
"#;

    /// A pack folder with `actions/counter.py`.
    fn pack() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("actions")).unwrap();
        std::fs::write(dir.path().join("actions/counter.py"), ACTION).unwrap();
        dir
    }

    fn warm_job(pack: &tempfile::TempDir, entry_point: &str, parameters: Value) -> Job {
        let mut job = job("p.counter", parameters);
        job.runner_type = RunnerType::Python;
        job.entry_point = Some(entry_point.into());
        job.pack_dir = Some(pack.path().to_path_buf());
        job.pack_ref = Some("p".into());
        job.pack_version = Some("1.0.0".into());
        job
    }

    fn pool(max: usize) -> Arc<Pool> {
        Pool::new(WarmConfig { max, idle: Duration::from_secs(60) })
    }

    #[test]
    fn entry_points_naming_a_function() {
        assert_eq!(split_entry("counter.py:run"), Some(("counter.py", "run")));
        assert_eq!(split_entry("sub/x.py:do_it2"), Some(("sub/x.py", "do_it2")));
        for cold in ["counter.py", "counter.py:", ":run", "x.py:2run", "x.py:a-b"] {
            assert_eq!(split_entry(cold), None, "{cold}");
        }
    }

    #[tokio::test]
    async fn the_module_is_imported_once_and_each_call_has_its_own_output() {
        let pack = pack();
        let pool = pool(4);
        let mut boots = Vec::new();
        for n in 1..=3 {
            let out = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": n}))).await;
            assert!(out.succeeded, "{out:?}");
            let output = out.output.clone().unwrap();
            // Module state survives: the second call does not import the module again.
            assert_eq!(output["calls"], n, "{out:?}");
            assert_eq!(output["param_env"], n.to_string());
            boots.push(output["boot"].clone());
            // Only this call's output: nothing of the previous one.
            let lines: Vec<&str> = out.stdout.lines().collect();
            assert_eq!(lines.len(), 2, "{}", out.stdout);
            assert_eq!(lines[0], format!("call {n}"));
            assert_eq!(serde_json::from_str::<Value>(lines[1]).unwrap(), output);
            assert_eq!(out.stderr, format!("err {n}\n"));
        }
        assert!(boots.iter().all(|b| b == &boots[0]), "{boots:?}");
        // The cost of a warm call, as the worker sees it (no pipeline around it).
        let started = Instant::now();
        for n in 0..50 {
            assert!(pool.run(&warm_job(&pack, "counter.py:run", json!({"n": n}))).await.succeeded);
        }
        eprintln!("warm call: {:.2} ms each (50 calls)", started.elapsed().as_secs_f64() * 1000.0 / 50.0);
        let calls = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 3}))).await;
        assert_eq!(calls.output.unwrap()["calls"], 54);
        assert_eq!((pool.live(), pool.idle()), (1, 1));
        // An exception fails the call with its traceback; the interpreter serves on.
        let failed = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 4, "fail": true}))).await;
        assert_eq!(failed.exit_code, Some(1), "{failed:?}");
        assert!(failed.error.as_deref().unwrap().ends_with("ValueError: no such widget"), "{failed:?}");
        let after = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 5}))).await;
        assert_eq!(after.output.as_ref().unwrap()["calls"], 56, "{after:?}");
        assert_eq!(after.stderr, "err 5\n");
        // Another function of the same file is another action's interpreter.
        let other = pool.run(&warm_job(&pack, "counter.py:other", json!({}))).await;
        assert_eq!(other.output, Some(json!({"other": true})), "{other:?}");
        assert_eq!(pool.live(), 2);
    }

    #[tokio::test]
    async fn a_crashed_interpreter_fails_its_execution_cleanly_and_is_replaced() {
        let pack = pack();
        let pool = pool(4);
        let first = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 1}))).await;
        assert!(first.succeeded, "{first:?}");
        let crashed = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 2, "crash": true}))).await;
        assert!(!crashed.succeeded);
        assert_eq!(crashed.exit_code, Some(3), "{crashed:?}");
        let error = crashed.error.as_deref().unwrap();
        assert!(error.starts_with("the warm python interpreter ended during the execution (exit code 3)"), "{error}");
        assert_eq!(crashed.stdout, "call 2\n");
        assert_eq!(pool.live(), 0);
        let next = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 3}))).await;
        assert!(next.succeeded, "{next:?}");
        let output = next.output.unwrap();
        assert_eq!(output["calls"], 1, "a new interpreter");
        assert_ne!(output["boot"], first.output.unwrap()["boot"]);
    }

    #[tokio::test]
    async fn secrets_go_over_the_pipe_and_are_masked() {
        let pack = pack();
        let pool = pool(4);
        let mut job = warm_job(&pack, "counter.py:run", json!({"n": 1, "token": "tok-7f3a9c"}));
        job.secret_names = vec!["token".into()];
        job.masker = Masker::new(&[json!("tok-7f3a9c")]).unwrap();
        job.command = None;
        let out = pool.run(&job).await;
        assert!(out.succeeded, "{out:?}");
        let output = out.output.unwrap();
        assert_eq!(output["token"], "********", "arrived, and masked in the output");
        assert_eq!(output["env_token"], json!([]), "never in the environment");
        assert!(!out.stdout.contains("tok-7f3a9c"), "{}", out.stdout);
    }

    #[tokio::test]
    async fn a_timeout_or_a_cancel_kills_the_interpreter_and_the_next_call_gets_a_new_one() {
        let pack = pack();
        let pool = pool(4);
        let first = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 1}))).await;
        let mut slow = warm_job(&pack, "counter.py:run", json!({"n": 2, "sleep": 30}));
        slow.timeout = Duration::from_millis(500);
        let started = Instant::now();
        let out = pool.run(&slow).await;
        assert_eq!(out.failure_reason, Some("timeout"), "{out:?}");
        assert_eq!(out.error.as_deref(), Some("timed out after 0 s"));
        assert_eq!(out.stdout, "call 2\n");
        assert!(started.elapsed() < GRACE, "SIGTERM ended it");
        assert_eq!(pool.live(), 0);
        let next = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 3}))).await;
        assert_eq!(next.output.as_ref().unwrap()["calls"], 1, "{next:?}");
        assert_ne!(next.output.unwrap()["boot"], first.output.unwrap()["boot"]);

        let canceled = warm_job(&pack, "counter.py:run", json!({"n": 4, "sleep": 30}));
        let cancel = canceled.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        });
        let out = pool.run(&canceled).await;
        assert_eq!(out.status(), attune_core::domain::ExecutionStatus::Canceled, "{out:?}");
        assert_eq!(pool.live(), 0);
    }

    #[tokio::test]
    async fn the_pool_is_bounded_and_idle_interpreters_retire() {
        let pack = pack();
        let pool = Pool::new(WarmConfig { max: 1, idle: Duration::from_millis(300) });
        let a = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 1}))).await;
        assert!(a.succeeded, "{a:?}");
        // Full with an idle interpreter of another action: that one is retired for this one.
        let b = pool.run(&warm_job(&pack, "counter.py:other", json!({}))).await;
        assert_eq!(b.output, Some(json!({"other": true})), "{b:?}");
        assert_eq!((pool.live(), pool.idle()), (1, 1));
        let a = pool.run(&warm_job(&pack, "counter.py:run", json!({"n": 2}))).await;
        assert_eq!(a.output.unwrap()["calls"], 1, "started again");
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!((pool.live(), pool.idle()), (0, 0), "retired when idle");
        // Without room (all busy), or without a pool, the same action runs cold, same result.
        let cold = process::run_cold(&warm_job(&pack, "counter.py:run", json!({"n": 7}))).await;
        assert!(cold.succeeded, "{cold:?}");
        assert_eq!(cold.output.unwrap()["calls"], 1);
        let missing = process::run_cold(&warm_job(&pack, "counter.py:nope", json!({}))).await;
        assert!(missing.error.as_deref().unwrap().contains("defines no function nope(params)"), "{missing:?}");
        let warm_missing = pool.run(&warm_job(&pack, "counter.py:nope", json!({}))).await;
        assert!(
            warm_missing.error.as_deref().unwrap().contains("defines no function nope(params)"),
            "{warm_missing:?}"
        );
        assert_eq!(pool.live(), 0);
    }
}
