//! Services as real `attune` processes a test starts, kills (SIGKILL) and restarts — how an
//! operator's bad day looks. They share the test's database and keys (see
//! [`crate::TestApp::process_env`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The `attune` binary built beside this test binary (`target/<profile>/attune`).
pub fn attune_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps/<test>");
    let bin = dir.join("attune");
    assert!(bin.is_file(), "{} is missing: build the workspace (cargo build) first", bin.display());
    bin
}

/// How a service process is started.
#[derive(Clone)]
pub struct Spec {
    /// `serve` arguments, e.g. `["serve", "worker"]`.
    pub args: Vec<String>,
    pub env: HashMap<String, String>,
    /// Start it as PID 1 of a PID namespace of its own (`unshare --pid --fork`), as in a
    /// container: a worker is then named `<host>/1/1` at every start.
    pub as_pid_one: bool,
}

/// A running (or killed) service process; its stderr is kept.
pub struct ServiceProcess {
    spec: Spec,
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl ServiceProcess {
    pub fn start(spec: &Spec) -> ServiceProcess {
        let mut cmd = if spec.as_pid_one {
            let mut c = Command::new("unshare");
            // --kill-child: the service dies with this unshare process (our handle on it).
            c.args(["--pid", "--fork", "--kill-child"]).arg(attune_binary());
            c
        } else {
            Command::new(attune_binary())
        };
        cmd.args(&spec.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("the attune binary starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut stream = child.stderr.take().expect("stderr is piped");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        ServiceProcess { spec: spec.clone(), child, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `attune` process itself: under `unshare` (as PID 1), its forked child.
    fn service_pid(&self) -> i32 {
        let pid = self.child.id() as i32;
        if !self.spec.as_pid_one {
            return pid;
        }
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()))
            .unwrap_or(pid)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the log contains `needle` (the process must stay up meanwhile).
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) {
        let started = Instant::now();
        while !self.stderr().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("attune {:?} exited with {status}:\n{}", self.spec.args, self.stderr());
            }
            assert!(started.elapsed() < limit, "no {needle:?} after {limit:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no drain, no deregistration, nothing flushed.
    pub fn kill(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM to the service, then the exit code (within `limit`; `unshare` passes its
    /// child's on).
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let _ = kill(Pid::from_raw(self.service_pid()), Signal::SIGTERM);
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if started.elapsed() > limit {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new process from the same spec (the old one must be gone).
    pub fn restart(&mut self) {
        *self = ServiceProcess::start(&self.spec);
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill();
        }
    }
}

/// Whether process `pid` is gone (no /proc entry, or a zombie nobody reaped yet).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status.lines().any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}
