//! Actions in containers (`container`), run through the Docker Engine API ([`bollard`]).
//!
//! The action's `container` block (API.md): `{"image", "command", "entrypoint", "env",
//! "memory_mb", "cpus", "network", "read_only"}`; only `image` is required. For each
//! attempt the runner:
//!
//! - connects to the engine at `sandbox.container_engine` (`ATTUNE_CONTAINER_ENGINE`), else
//!   `DOCKER_HOST`, else `unix:///var/run/docker.sock`; none answering fails the execution at
//!   once with "no container engine reachable at <address>: <error>";
//! - creates a container of `image`, pulled first when the engine does not have it (the pull
//!   counts against the action's timeout). It runs `command` (a string is run by
//!   `/bin/sh -c`, a list as it is), else the action's own `command` (by `/bin/sh -c`), else
//!   its `entry_point` as `/pack/actions/<entry_point>`, else the image's own command;
//!   `entrypoint` replaces the image's entrypoint;
//! - hands it the action protocol's stdin document (the same one process actions get:
//!   [`super::process::input_document`], secret parameters in plaintext — their only channel)
//!   on the container's stdin, then EOF; the environment has `ATTUNE_EXECUTION_ID`,
//!   `ATTUNE_ACTION_REF`, `ATTUNE_API_URL`, the block's `env`, and `ATTUNE_PARAM_<NAME>` for
//!   the non-secret parameters only ([`super::process::param_env`]);
//! - isolates it: not privileged, every capability dropped, `no-new-privileges`, read-only
//!   root filesystem with a private 64 MiB tmpfs at `/tmp` (unless `read_only: false`), no
//!   network unless the block says `network: true` (and the action did not say
//!   `network: false`), the pack's directory read-only at `/pack` when it has one, the
//!   engine's init as PID 1 (signals reach the command, zombies are reaped), no log kept by
//!   the engine (the output is read from the attached streams only);
//! - limits it: memory (`memory_mb`, else `sandbox.limits.memory_mb`; no swap), `cpus` when
//!   given, processes, open files and CPU seconds from `sandbox.limits`;
//! - captures stdout/stderr as process actions' are ([`crate::output::capture`]: bounded by
//!   `max_output_bytes`, secrets masked, the last JSON object line is `result.output`); exit
//!   code 0 succeeds, any other fails with stderr's tail; a container the kernel killed for
//!   memory fails with `failure_reason: "resource_limit"`;
//! - on timeout or cancel, stops it (SIGTERM, SIGKILL after [`GRACE`]); and removes it in
//!   every case, also when the runner itself fails or is dropped. Containers carry the
//!   labels `attune.execution`, `attune.attempt` and `attune.action`.

use std::collections::HashMap;
use std::time::Duration;

use attune_core::child::SandboxConfig;
use bollard::container::LogOutput;
use bollard::errors::Error as EngineError;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType, ResourcesUlimits};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateImageOptionsBuilder, InspectContainerOptions, RemoveContainerOptionsBuilder,
    StartContainerOptions, StopContainerOptionsBuilder, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::process::{error_tail, finish_capture, input_document, param_env, GRACE};
use super::{Job, Outcome};
use crate::output::{capture, last_json_object};

/// The engine address when neither `sandbox.container_engine` nor `DOCKER_HOST` names one.
pub const DEFAULT_ENGINE: &str = "unix:///var/run/docker.sock";
/// Where the pack's directory is mounted (read-only) in the container.
pub const PACK_MOUNT: &str = "/pack";
/// The labels every action container carries.
pub const LABEL_EXECUTION: &str = "attune.execution";
pub const LABEL_ATTEMPT: &str = "attune.attempt";
pub const LABEL_ACTION: &str = "attune.action";
/// How long the engine has to answer the first request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The writable scratch of a read-only container (its size counts against its memory).
const TMPFS: &str = "rw,nosuid,nodev,size=64m";
/// The smallest memory limit the engine accepts, in MiB.
const MIN_MEMORY_MB: u64 = 6;
/// Extra CPU seconds between the soft limit (SIGXCPU) and the hard one (SIGKILL).
const CPU_GRACE_SECS: i64 = 5;
const SETTINGS: &str = "image, command, entrypoint, env, memory_mb, cpus, network, read_only";

/// The engine address for `sandbox`: `sandbox.container_engine`, else `DOCKER_HOST`, else
/// [`DEFAULT_ENGINE`].
pub fn engine_address(sandbox: &SandboxConfig) -> String {
    let set = |a: &String| !a.trim().is_empty();
    sandbox
        .container_engine
        .clone()
        .filter(set)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(set))
        .unwrap_or_else(|| DEFAULT_ENGINE.to_string())
}

/// A client of the engine at `address` (`unix:///path`, a bare socket path, `tcp://` or
/// `http://`), once the engine answered and the API version was agreed on.
pub async fn connect(address: &str) -> Result<Docker, String> {
    let unreachable = |why: String| format!("no container engine reachable at {address}: {why}");
    let host = if address.starts_with('/') { format!("unix://{address}") } else { address.to_string() };
    let docker = Docker::connect_with_host(&host).map_err(|e| unreachable(describe(&e)))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
        Ok(Ok(docker)) => Ok(docker),
        Ok(Err(e)) => Err(unreachable(describe(&e))),
        Err(_) => Err(unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
    }
}

/// An error with its causes (the engine client's top-level messages say little alone).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The action's `container` block, checked.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    image: String,
    command: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    env: Vec<String>,
    /// MiB, and the setting it came from (for the message when it is exceeded).
    memory_mb: (u64, &'static str),
    cpus: Option<f64>,
    network: bool,
    read_only: bool,
}

impl Spec {
    fn of(job: &Job) -> Result<Spec, String> {
        let Some(block) = job.container.as_ref().and_then(Value::as_object) else {
            return Err("a container action needs a container block with image".into());
        };
        if let Some(unknown) = block.keys().find(|k| !SETTINGS.split(", ").any(|s| s == k.as_str())) {
            return Err(format!("container.{unknown}: unknown setting (expected one of {SETTINGS})"));
        }
        let image = match block.get("image") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => return Err("container.image: expected the name of an image, such as \"python:3.11-slim\"".into()),
        };
        let command = match block.get("command") {
            None | Some(Value::Null) => None,
            Some(Value::String(line)) => Some(vec!["/bin/sh".into(), "-c".into(), line.clone()]),
            Some(list) => Some(strings(list).ok_or(
                "container.command: expected a string (run by /bin/sh -c) or a list of strings (run as it is)",
            )?),
        };
        let entrypoint = match block.get("entrypoint") {
            None | Some(Value::Null) => None,
            Some(Value::String(program)) => Some(vec![program.clone()]),
            Some(list) => Some(strings(list).ok_or("container.entrypoint: expected a string or a list of strings")?),
        };
        let env = match block.get("env") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(vars)) => env_list(vars)?,
            Some(_) => return Err("container.env: expected a mapping of variable names to values".into()),
        };
        let limit = job.sandbox.limits.memory_mb;
        let memory_mb = match block.get("memory_mb") {
            None | Some(Value::Null) => (limit, "sandbox.limits.memory_mb"),
            Some(v) => match v.as_u64() {
                Some(mb) if (MIN_MEMORY_MB..=limit).contains(&mb) => (mb, "container.memory_mb"),
                Some(mb) if mb > limit => {
                    return Err(format!(
                        "container.memory_mb: {mb} is above this worker's limit (sandbox.limits.memory_mb = {limit})"
                    ))
                }
                _ => {
                    return Err(format!(
                        "container.memory_mb: expected a whole number of MiB from {MIN_MEMORY_MB}, got {v}"
                    ))
                }
            },
        };
        let cpus = match block.get("cpus") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(n) if n > 0.0 && n.is_finite() => Some(n),
                _ => return Err(format!("container.cpus: expected a number of CPUs above 0, such as 0.5, got {v}")),
            },
        };
        let flag = |name: &str, default: bool| match block.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(format!("container.{name}: expected true or false, got {v}")),
        };
        // Off unless the block turns it on; the action's own `network: false` wins.
        let network = flag("network", false)? && job.network;
        let read_only = flag("read_only", true)?;
        Ok(Spec { image, command, entrypoint, env, memory_mb, cpus, network, read_only })
    }
}

/// A JSON list of strings.
fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?.iter().map(|s| s.as_str().map(str::to_string)).collect()
}

/// `NAME=value` for each variable of the block's `env`: strings as they are, other scalars
/// as JSON.
fn env_list(vars: &Map<String, Value>) -> Result<Vec<String>, String> {
    vars.iter()
        .map(|(name, value)| {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!("container.env: {name:?} is not a variable name"));
            }
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => return Err(format!("container.env.{name}: expected a string, number or boolean")),
            };
            Ok(format!("{name}={value}"))
        })
        .collect()
}

/// `name` and `tag` of an image reference as the pull takes them; a reference without a
/// tag or digest means `latest` (as `docker pull` does), never every tag.
fn pull_reference(image: &str) -> (String, String) {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        (image.to_string(), String::new())
    } else if let Some((name, tag)) = image.rsplit_once(':').filter(|_| last.contains(':')) {
        (name.to_string(), tag.to_string())
    } else {
        (image.to_string(), "latest".to_string())
    }
}

/// What the container runs (`Cmd`): the block's command, else the action's `command`, else
/// its `entry_point` in the mounted pack, else the image's own.
fn command_of(job: &Job, spec: &Spec) -> Result<Option<Vec<String>>, String> {
    if let Some(command) = &spec.command {
        return Ok(Some(command.clone()));
    }
    if let Some(command) = &job.command {
        return Ok(Some(vec!["/bin/sh".into(), "-c".into(), command.clone()]));
    }
    let Some(ep) = &job.entry_point else { return Ok(None) };
    let pack =
        job.pack_dir.as_ref().ok_or_else(|| format!("entry_point {ep:?} needs a pack loaded from a directory"))?;
    let path = pack.join("actions").join(ep);
    if !path.is_file() {
        return Err(format!("entry_point {} does not exist", path.display()));
    }
    Ok(Some(vec![format!("{PACK_MOUNT}/actions/{ep}")]))
}

/// The container to create for `job`.
fn container_body(job: &Job, spec: &Spec) -> Result<ContainerCreateBody, String> {
    let limits = &job.sandbox.limits;
    let mut env = spec.env.clone();
    env.push(format!("ATTUNE_EXECUTION_ID={}", job.execution_id));
    env.push(format!("ATTUNE_ACTION_REF={}", job.action_ref));
    env.push(format!("ATTUNE_API_URL={}", job.api_url));
    env.extend(param_env(job).into_iter().map(|(k, v)| format!("{k}={v}")));
    let mounts = job.pack_dir.as_ref().map(|dir| {
        vec![Mount {
            target: Some(PACK_MOUNT.into()),
            source: Some(dir.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        }]
    });
    let ulimit = |name: &str, soft: u64, hard: i64| ResourcesUlimits {
        name: Some(name.into()),
        soft: Some(i64::try_from(soft).unwrap_or(i64::MAX)),
        hard: Some(hard),
    };
    let cpu = i64::try_from(limits.cpu_seconds).unwrap_or(i64::MAX);
    let nofile = i64::try_from(limits.open_files).unwrap_or(i64::MAX);
    let memory = i64::try_from(spec.memory_mb.0.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
    let host_config = HostConfig {
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: spec.cpus.map(|n| (n * 1e9) as i64),
        pids_limit: Some(i64::try_from(limits.processes).unwrap_or(i64::MAX)),
        ulimits: Some(vec![
            ulimit("nofile", limits.open_files, nofile),
            ulimit("cpu", limits.cpu_seconds, cpu.saturating_add(CPU_GRACE_SECS)),
        ]),
        network_mode: (!spec.network).then(|| "none".into()),
        privileged: Some(false),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        readonly_rootfs: Some(spec.read_only),
        tmpfs: spec.read_only.then(|| HashMap::from([("/tmp".to_string(), TMPFS.to_string())])),
        mounts,
        init: Some(true),
        auto_remove: Some(false),
        log_config: Some(HostConfigLogConfig { typ: Some("none".into()), config: None }),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: command_of(job, spec)?,
        entrypoint: spec.entrypoint.clone(),
        env: Some(env),
        labels: Some(HashMap::from([
            (LABEL_EXECUTION.to_string(), job.execution_id.to_string()),
            (LABEL_ATTEMPT.to_string(), job.attempt.to_string()),
            (LABEL_ACTION.to_string(), job.action_ref.clone()),
        ])),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        open_stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        network_disabled: Some(!spec.network),
        host_config: Some(host_config),
        ..Default::default()
    })
}

/// How waiting for something of the engine ended, when not by itself.
enum Interrupted {
    TimedOut,
    Canceled,
}

/// `work`, unless the deadline passes or a cancel request comes first.
async fn bounded<T>(
    job: &Job,
    deadline: Instant,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Interrupted> {
    tokio::select! {
        done = work => Ok(done),
        _ = tokio::time::sleep_until(deadline) => Err(Interrupted::TimedOut),
        _ = job.cancel.cancelled() => Err(Interrupted::Canceled),
    }
}

fn interrupted(job: &Job, why: Interrupted, during: &str) -> Outcome {
    match why {
        Interrupted::Canceled => Outcome::canceled(),
        Interrupted::TimedOut => {
            let mut out = Outcome::failed(format!("timed out after {} s {during}", job.timeout.as_secs()));
            out.failure_reason = Some("timeout");
            out
        }
    }
}

/// Pulls `image`; an error names it.
async fn pull(docker: &Docker, image: &str) -> Result<(), String> {
    let (name, tag) = pull_reference(image);
    let options = CreateImageOptionsBuilder::new().from_image(&name).tag(&tag).build();
    let mut progress = docker.create_image(Some(options), None, None);
    while let Some(step) = progress.next().await {
        match step {
            Ok(info) => {
                if let Some(message) = info.error_detail.and_then(|d| d.message) {
                    return Err(format!("cannot pull image {image}: {message}"));
                }
            }
            Err(e) => return Err(format!("cannot pull image {image}: {}", describe(&e))),
        }
    }
    Ok(())
}

/// Creates the container, pulling its image first when the engine does not have it.
async fn create(docker: &Docker, job: &Job, spec: &Spec, deadline: Instant) -> Result<String, Outcome> {
    let body = container_body(job, spec).map_err(Outcome::failed)?;
    let refused =
        |e: EngineError| Outcome::failed(format!("the container engine refused the container: {}", describe(&e)));
    match docker.create_container(None, body.clone()).await {
        Ok(created) => return Ok(created.id),
        Err(EngineError::DockerResponseServerError { status_code: 404, .. }) => {}
        Err(e) => return Err(refused(e)),
    }
    tracing::info!(execution = job.execution_id, image = %spec.image, "pulling the action's image");
    match bounded(job, deadline, pull(docker, &spec.image)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(Outcome::failed(e)),
        Err(why) => return Err(interrupted(job, why, &format!("(pulling image {})", spec.image))),
    }
    docker.create_container(None, body).await.map(|c| c.id).map_err(refused)
}

/// Removes the container when dropped, unless [`Removal::now`] already did: a runner that
/// fails, panics or is dropped half-way leaves no container behind.
struct Removal {
    docker: Docker,
    id: String,
    done: bool,
}

impl Removal {
    async fn now(mut self) {
        self.done = true;
        remove(&self.docker, &self.id).await;
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        if !self.done {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (docker, id) = (self.docker.clone(), self.id.clone());
                runtime.spawn(async move { remove(&docker, &id).await });
            }
        }
    }
}

async fn remove(docker: &Docker, id: &str) {
    let options = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
    if let Err(e) = docker.remove_container(id, Some(options)).await {
        tracing::warn!(container = id, error = %describe(&e), "cannot remove an action's container");
    }
}

pub async fn run(job: &Job) -> Outcome {
    let deadline = Instant::now() + job.timeout;
    let spec = match Spec::of(job) {
        Ok(spec) => spec,
        Err(e) => return Outcome::failed(e),
    };
    let docker = match connect(&engine_address(&job.sandbox)).await {
        Ok(docker) => docker,
        Err(e) => return Outcome::failed(e),
    };
    let id = match create(&docker, job, &spec, deadline).await {
        Ok(id) => id,
        Err(outcome) => return outcome,
    };
    let removal = Removal { docker: docker.clone(), id: id.clone(), done: false };
    let outcome = run_created(&docker, &id, job, &spec, deadline).await;
    removal.now().await;
    outcome
}

/// Runs the created container `id` to its end (or its timeout, or a cancel request).
async fn run_created(docker: &Docker, id: &str, job: &Job, spec: &Spec, deadline: Instant) -> Outcome {
    // Attached before it starts: nothing it writes is missed.
    let attach = AttachContainerOptionsBuilder::new().stream(true).stdin(true).stdout(true).stderr(true).build();
    let attached = match docker.attach_container(id, Some(attach)).await {
        Ok(a) => a,
        Err(e) => return Outcome::failed(format!("cannot attach to the action's container: {}", describe(&e))),
    };
    if let Err(e) = docker.start_container(id, None::<StartContainerOptions>).await {
        return Outcome::failed(format!("the action's container did not start: {}", describe(&e)));
    }
    if let Some(started) = &job.started {
        if let Ok(info) = docker.inspect_container(id, None::<InspectContainerOptions>).await {
            if let Some(pid) = info.state.and_then(|s| s.pid).and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0) {
                started.report(job.execution_id, job.attempt, pid);
            }
        }
    }

    // The whole document, then EOF (the attached connection's write side is closed; the
    // engine closes the container's stdin: `stdin_once`). A command that never reads it
    // is no error.
    let doc = serde_json::to_vec(&input_document(job)).expect("JSON serialises");
    let mut input = attached.input;
    let feeder = tokio::spawn(async move {
        let _ = input.write_all(&doc).await;
        let _ = input.shutdown().await;
    });
    // The engine's multiplexed stream, split into stdout and stderr, each captured as a
    // process's pipe is.
    let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
    let mut streams = attached.output;
    let demux = tokio::spawn(async move {
        while let Some(Ok(frame)) = streams.next().await {
            let _ = match frame {
                LogOutput::StdOut { message } | LogOutput::Console { message } => out_w.write_all(&message).await,
                LogOutput::StdErr { message } => err_w.write_all(&message).await,
                LogOutput::StdIn { .. } => Ok(()),
            };
        }
    });
    let limit = job.max_output_bytes;
    let stdout = tokio::spawn(capture(out_r, limit, job.masker.clone()));
    let stderr = tokio::spawn(capture(err_r, limit, job.masker.clone()));

    let exited = bounded(job, deadline, async {
        match docker.wait_container(id, None::<WaitContainerOptions>).next().await {
            Some(Ok(status)) => Ok(status.status_code),
            Some(Err(EngineError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(describe(&e)),
            None => Err("the engine ended the wait without an exit status".to_string()),
        }
    })
    .await;
    if exited.is_err() {
        // SIGTERM to its init, which passes it on; SIGKILL after the grace period.
        let stop = StopContainerOptionsBuilder::new().t(GRACE.as_secs() as i32).build();
        if let Err(e) = docker.stop_container(id, Some(stop)).await {
            tracing::warn!(container = id, error = %describe(&e), "cannot stop an action's container");
        }
    }
    let out = finish_capture(stdout).await;
    let err = finish_capture(stderr).await;
    demux.abort();
    feeder.abort();
    let oom_killed = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|info| info.state?.oom_killed)
        .unwrap_or(false);

    let stdout_text = out.text(limit);
    let output = last_json_object(&out.tail_text()).or_else(|| last_json_object(&stdout_text));
    let mut outcome = Outcome {
        succeeded: false,
        exit_code: None,
        stdout: stdout_text,
        stderr: err.text(limit),
        truncated: out.truncated(limit) || err.truncated(limit),
        output,
        error: None,
        failure_reason: None,
    };
    let code = match exited {
        Ok(Ok(code)) => i32::try_from(code).unwrap_or(i32::MAX),
        Ok(Err(e)) => {
            outcome.error = Some(format!("lost the action's container: {e}"));
            return outcome;
        }
        Err(why) => {
            let ended = interrupted(job, why, "");
            outcome.error = ended.error.map(|e| e.trim_end().to_string());
            outcome.failure_reason = ended.failure_reason;
            return outcome;
        }
    };
    outcome.exit_code = Some(code);
    outcome.succeeded = code == 0;
    if outcome.succeeded {
        return outcome;
    }
    let tail = error_tail(&err);
    outcome.error = Some(if oom_killed {
        outcome.failure_reason = Some("resource_limit");
        let (mb, setting) = spec.memory_mb;
        let limit = format!("the action exceeded its memory limit ({mb} MiB, {setting})");
        if tail.is_empty() {
            limit
        } else {
            format!("{limit}: {tail}")
        }
    } else if tail.is_empty() {
        format!("exited with code {code}")
    } else {
        tail
    });
    outcome
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::runners::tests::job;

    fn container_job(block: Value) -> Job {
        let mut job = job("p.c", json!({"name": "ada", "token": "s3cret"}));
        job.runner_type = attune_core::domain::RunnerType::Container;
        job.secret_names = vec!["token".into()];
        job.container = Some(block);
        job
    }

    #[tokio::test]
    async fn an_unreachable_engine_fails_at_once_naming_its_address() {
        let mut job = container_job(json!({"image": "attune-test/busybox:1", "command": "true"}));
        job.sandbox.container_engine = Some("unix:///nonexistent/attune/docker.sock".into());
        let started = std::time::Instant::now();
        let out = run(&job).await;
        assert!(!out.succeeded && out.exit_code.is_none(), "{out:?}");
        let error = out.error.unwrap();
        assert_eq!(
            error,
            "no container engine reachable at unix:///nonexistent/attune/docker.sock: \
             Socket not found: /nonexistent/attune/docker.sock"
        );
        // Nothing listens on this port: refused, not waited on.
        job.sandbox.container_engine = Some("tcp://127.0.0.1:1".into());
        let error = run(&job).await.error.unwrap();
        assert!(error.starts_with("no container engine reachable at tcp://127.0.0.1:1: "), "{error}");
        assert!(error.contains("Connection refused"), "{error}");
        assert!(started.elapsed() < CONNECT_TIMEOUT, "failed at once");
    }

    #[test]
    fn the_engine_address_is_the_setting_else_docker_host_else_the_default_socket() {
        let mut sandbox = attune_core::Config::default().sandbox;
        sandbox.container_engine = Some("tcp://10.0.0.5:2375".into());
        assert_eq!(engine_address(&sandbox), "tcp://10.0.0.5:2375");
        sandbox.container_engine = None;
        let expected = std::env::var("DOCKER_HOST").ok().filter(|h| !h.trim().is_empty());
        assert_eq!(engine_address(&sandbox), expected.unwrap_or_else(|| DEFAULT_ENGINE.into()));
    }

    #[test]
    fn the_block_is_checked_naming_the_bad_setting() {
        let spec = Spec::of(&container_job(json!({"image": "alpine:3", "command": "echo hi"}))).unwrap();
        assert_eq!(spec.command, Some(vec!["/bin/sh".to_string(), "-c".into(), "echo hi".into()]));
        assert_eq!((spec.memory_mb, spec.network, spec.read_only), ((1024, "sandbox.limits.memory_mb"), false, true));
        let spec = Spec::of(&container_job(json!({
            "image": "alpine:3", "command": ["echo", "hi"], "entrypoint": "/bin/env", "env": {"A": 1, "B": "x"},
            "memory_mb": 64, "cpus": 0.5, "network": true, "read_only": false
        })))
        .unwrap();
        assert_eq!(spec.command, Some(vec!["echo".to_string(), "hi".into()]));
        assert_eq!(spec.entrypoint, Some(vec!["/bin/env".to_string()]));
        assert_eq!(spec.env, ["A=1", "B=x"]);
        assert_eq!(
            (spec.memory_mb, spec.cpus, spec.network, spec.read_only),
            ((64, "container.memory_mb"), Some(0.5), true, false)
        );
        // The action's `network: false` wins over the block's.
        let mut offline = container_job(json!({"image": "alpine:3", "network": true}));
        offline.network = false;
        assert!(!Spec::of(&offline).unwrap().network);

        let bad = |block: Value| Spec::of(&container_job(block)).unwrap_err();
        assert_eq!(
            bad(json!({"command": "x"})),
            "container.image: expected the name of an image, such as \"python:3.11-slim\""
        );
        assert!(bad(json!({"image": "a", "volumes": []})).starts_with("container.volumes: unknown setting"));
        assert!(bad(json!({"image": "a", "command": 3})).starts_with("container.command: expected a string"));
        assert!(bad(json!({"image": "a", "memory_mb": 2})).starts_with("container.memory_mb: expected a whole number"));
        assert_eq!(
            bad(json!({"image": "a", "memory_mb": 4096})),
            "container.memory_mb: 4096 is above this worker's limit (sandbox.limits.memory_mb = 1024)"
        );
        assert!(bad(json!({"image": "a", "cpus": 0})).starts_with("container.cpus: expected a number"));
        assert!(bad(json!({"image": "a", "network": "yes"})).starts_with("container.network: expected true or false"));
        assert!(bad(json!({"image": "a", "env": {"A=B": "x"}})).contains("is not a variable name"));
    }

    #[test]
    fn secret_parameters_stay_out_of_the_containers_environment() {
        let job = container_job(json!({"image": "alpine:3", "env": {"MODE": "fast"}}));
        let body = container_body(&job, &Spec::of(&job).unwrap()).unwrap();
        let env = body.env.unwrap();
        assert!(
            env.contains(&"ATTUNE_PARAM_NAME=ada".to_string()) && env.contains(&"MODE=fast".to_string()),
            "{env:?}"
        );
        assert!(!env.iter().any(|e| e.contains("s3cret") || e.starts_with("ATTUNE_PARAM_TOKEN")), "{env:?}");
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!((host.privileged, host.readonly_rootfs), (Some(false), Some(true)));
        assert_eq!(host.memory, Some(1024 * 1024 * 1024));
    }

    /// The image scripts/container-engine.sh imports (busybox, no registry needed).
    const TEST_IMAGE: &str = "attune-test/busybox:1";

    /// Fails (never skips) when the engine is missing, saying how to get one.
    async fn engine_or_fail() {
        if let Err(e) = connect(&engine_address(&attune_core::Config::default().sandbox)).await {
            panic!("{e}\nthe container runner's tests need a Docker engine and {TEST_IMAGE}: run scripts/container-engine.sh");
        }
    }

    #[tokio::test]
    async fn a_container_reads_its_document_on_stdin_and_its_output_is_captured_masked_and_bounded() {
        engine_or_fail().await;
        let mut job = container_job(json!({
            "image": TEST_IMAGE,
            "command": "doc=$(cat); echo \"$doc\"; env | grep -c s3cret; echo \"name=$ATTUNE_PARAM_NAME\"; \
                        echo 'to stderr' >&2; head -c 3000 /dev/zero | tr '\\0' x; echo; echo '{\"done\": true}'"
        }));
        job.masker = crate::masking::Masker::new(&[json!("s3cret")]).unwrap();
        job.max_output_bytes = 2000;
        let out = run(&job).await;
        assert!(out.succeeded, "{out:?}");
        let mut lines = out.stdout.lines();
        let doc: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(doc["parameters"], json!({"name": "ada", "token": "********"}), "masked as it is read");
        assert_eq!(doc["context"]["execution_id"], 1);
        assert_eq!((lines.next(), lines.next()), (Some("0"), Some("name=ada")), "{}", out.stdout);
        assert_eq!(out.stderr, "to stderr\n");
        assert!(out.truncated && out.stdout.ends_with(crate::output::TRUNCATION_MARKER), "{out:?}");
        assert_eq!(out.output, Some(json!({"done": true})), "the last JSON line, past the cut");

        job.container = Some(json!({"image": TEST_IMAGE, "command": "echo 'it broke' >&2; exit 3"}));
        let out = run(&job).await;
        assert_eq!((out.succeeded, out.exit_code, out.error.as_deref()), (false, Some(3), Some("it broke")));
    }

    #[tokio::test]
    async fn a_container_over_its_memory_limit_fails_naming_the_limit() {
        engine_or_fail().await;
        // `tail -c` keeps what it is asked for in memory: 64 MiB, in 16 MiB.
        let job = container_job(json!({
            "image": TEST_IMAGE, "memory_mb": 16,
            "command": "head -c 100000000 /dev/zero | tail -c 67108864 >/dev/null"
        }));
        let out = run(&job).await;
        assert_eq!(out.failure_reason, Some("resource_limit"), "{out:?}");
        let error = out.error.unwrap();
        assert!(error.starts_with("the action exceeded its memory limit (16 MiB, container.memory_mb)"), "{error}");
    }

    #[test]
    fn pull_references_name_one_tag() {
        assert_eq!(pull_reference("alpine"), ("alpine".into(), "latest".into()));
        assert_eq!(pull_reference("python:3.11-slim"), ("python".into(), "3.11-slim".into()));
        assert_eq!(pull_reference("localhost:5000/x/y"), ("localhost:5000/x/y".into(), "latest".into()));
        assert_eq!(pull_reference("localhost:5000/x/y:2"), ("localhost:5000/x/y".into(), "2".into()));
        assert_eq!(pull_reference("alpine@sha256:abc"), ("alpine@sha256:abc".into(), String::new()));
    }
}
