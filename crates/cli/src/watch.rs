//! Following an execution and its workflow tree until it ends (`--wait`, `--watch`,
//! `attune execution watch|tail`).
//!
//! The changes come over the WebSocket stream: the socket subscribes first, then the tree
//! is read over REST (`GET /executions/{id}` and `/children?depth=all`), then every
//! execution change whose execution or parent is in the tree is applied — so nothing that
//! happens between the read and the subscription is missed. A closed socket is reopened
//! with `since` = the last change seen; where there is no stream (no `/ws` on the server,
//! an `https://` URL) the tree is polled every second instead. The tree is also re-read
//! every few seconds while streaming, as a safety net.
//!
//! Ctrl-C stops the watching, never the execution.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::client::Api;
use crate::error::CliError;
use crate::output::{self, status_paint, Out, Paint};
use crate::stream::{Next, Stream};

/// Statuses an execution does not leave.
pub const FINAL: &[&str] = &["succeeded", "failed", "canceled", "succeeded_with_errors"];

const POLL_EVERY: Duration = Duration::from_secs(1);
/// While streaming, the tree is still re-read this often.
const RESYNC_EVERY: Duration = Duration::from_secs(5);

pub fn is_final(execution: &Value) -> bool {
    FINAL.contains(&execution["status"].as_str().unwrap_or_default())
}

/// How much a follow shows on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Nothing but a spinner on a terminal (`--wait`).
    Quiet,
    /// Every execution of the tree with its state, elapsed time and attempt (`--watch`):
    /// live on a terminal, one line per change otherwise.
    Progress,
    /// The output of each execution of the tree as it ends (`execution tail`).
    Output,
}

/// The executions followed: the root and every descendant seen, by id.
#[derive(Default)]
struct Tree {
    root: i64,
    nodes: BTreeMap<i64, Value>,
}

impl Tree {
    fn belongs(&self, execution: &Value) -> bool {
        let id = execution_id(execution);
        id == Some(self.root)
            || id.is_some_and(|id| self.nodes.contains_key(&id))
            || execution["parent_id"].as_i64().is_some_and(|p| p == self.root || self.nodes.contains_key(&p))
    }

    fn depth(&self, execution: &Value) -> usize {
        let mut depth = 0;
        let mut parent = execution["parent_id"].as_i64();
        if execution_id(execution) == Some(self.root) {
            return 0;
        }
        while let Some(p) = parent {
            depth += 1;
            if p == self.root || depth > 32 {
                break;
            }
            parent = self.nodes.get(&p).and_then(|n| n["parent_id"].as_i64());
        }
        depth
    }
}

fn execution_id(execution: &Value) -> Option<i64> {
    execution["id"].as_i64().or_else(|| execution["execution_id"].as_i64())
}

/// Follows execution `id` until it ends; returns it as `GET /executions/{id}` shows it
/// then (with its output).
pub async fn follow(api: &Api, id: i64, show: Show) -> Result<Value, CliError> {
    // Taken over before anything is shown, so a Ctrl-C at any moment stops the watching
    // (and never the process mid-line).
    let mut interrupt = interrupt_signal()?;
    let mut display = Display::new(show);
    let started = Instant::now();
    let token = api.token().await?;
    let mut stream = match Stream::open(&api.url, &token, &["execution"], None).await {
        Ok(s) => Some(s),
        Err(why) => {
            display.note(&format!("live updates unavailable ({why}); polling every {}s", POLL_EVERY.as_secs()));
            None
        }
    };
    let mut tree = Tree { root: id, nodes: BTreeMap::new() };
    let mut last_change: Option<i64> = None;
    snapshot(api, &mut tree, &mut display, started).await?;
    display.flush(api, id).await?;
    let mut last_sync = Instant::now();
    while !tree.nodes.get(&id).is_some_and(is_final) {
        let wait = if stream.is_some() { Duration::from_millis(250) } else { POLL_EVERY };
        tokio::select! {
            _ = interrupt.recv() => {
                display.finish();
                if let Some(s) = stream.take() { s.close().await; }
                return Err(CliError::Interrupted(id));
            }
            next = next_change(&mut stream) => match next {
                Next::Change(change) => {
                    last_change = change["id"].as_i64().or(last_change);
                    if change["entity_type"] == "execution" && tree.belongs(&change["data"]) {
                        apply(&mut tree, change["data"].clone(), &mut display, started);
                    }
                }
                Next::Closed(close) => {
                    // Reopen where we left off (a fresh token: an expired one is a 4401).
                    let token = api.token().await?;
                    stream = match Stream::open(&api.url, &token, &["execution"], last_change).await {
                        Ok(s) => Some(s),
                        Err(why) => {
                            let how = close.map(|(c, r)| format!("closed {c}: {r}")).unwrap_or_else(|| "dropped".into());
                            display.note(&format!("the stream {how} and cannot be reopened ({why}); polling instead"));
                            None
                        }
                    };
                }
            },
            _ = tokio::time::sleep(wait) => {
                display.tick(&tree, started);
                let every = if stream.is_some() { RESYNC_EVERY } else { POLL_EVERY };
                if last_sync.elapsed() >= every {
                    snapshot(api, &mut tree, &mut display, started).await?;
                    last_sync = Instant::now();
                }
            }
        }
        display.flush(api, id).await?;
    }
    if let Some(s) = stream {
        s.close().await;
    }
    // The final state with the captured output (the stream's rows and lists leave it out).
    snapshot(api, &mut tree, &mut display, started).await?;
    display.flush(api, id).await?;
    display.finish();
    api.get(&format!("/api/v1/executions/{id}"), &[]).await
}

/// SIGINT (Ctrl-C), handled from now on.
pub fn interrupt_signal() -> Result<tokio::signal::unix::Signal, CliError> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| CliError::config(format!("cannot handle Ctrl-C: {e}")))
}

async fn next_change(stream: &mut Option<Stream>) -> Next {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Re-reads the root and its whole tree over REST.
async fn snapshot(api: &Api, tree: &mut Tree, display: &mut Display, started: Instant) -> Result<(), CliError> {
    let root = api.get(&format!("/api/v1/executions/{}", tree.root), &[]).await?;
    let children = api
        .list(
            &format!("/api/v1/executions/{}/children", tree.root),
            &[("depth", "all".into()), ("limit", "1000".into())],
        )
        .await?;
    apply(tree, root, display, started);
    for child in children.items {
        apply(tree, child, display, started);
    }
    Ok(())
}

fn apply(tree: &mut Tree, execution: Value, display: &mut Display, started: Instant) {
    let Some(id) = execution_id(&execution) else { return };
    // A row older than the one held (a change from before the REST read) is skipped.
    if let Some(held) = tree.nodes.get(&id) {
        if is_final(held) && !is_final(&execution) {
            return;
        }
    }
    let depth = tree.depth(&execution);
    let changed = tree
        .nodes
        .get(&id)
        .is_none_or(|held| held["status"] != execution["status"] || held["attempt"] != execution["attempt"]);
    tree.nodes.insert(id, execution);
    if changed {
        display.changed(&tree.nodes[&id], depth, id == tree.root, started);
    }
}

/// A line about one execution: `fetch (core.echo) #43  succeeded  0.4s  attempt 2/3`.
fn describe(execution: &Value, out: &Out) -> (String, String) {
    let action = execution["action_ref"].as_str().unwrap_or("?");
    let id = execution_id(execution).unwrap_or_default();
    let label = match (execution["workflow_task"].as_str(), execution["item_index"].as_i64()) {
        (Some(task), Some(i)) => format!("{task}[{i}] ({action}) #{id}"),
        (Some(task), None) => format!("{task} ({action}) #{id}"),
        _ => format!("{action} #{id}"),
    };
    let status = execution["status"].as_str().unwrap_or("?");
    let mut detail = out.paint(status_paint(status), status);
    let elapsed = output::elapsed(execution);
    if !elapsed.is_empty() && !matches!(status, "requested" | "scheduled") {
        detail.push_str(&format!("  {elapsed}"));
    }
    let (attempt, max) = (execution["attempt"].as_i64().unwrap_or(1), execution["max_attempts"].as_i64().unwrap_or(1));
    if max > 1 {
        detail.push_str(&format!("  attempt {attempt}/{max}"));
    }
    if let Some(error) = execution["result"]["error"].as_str().filter(|_| status == "failed") {
        detail.push_str(&format!("  {}", output::short(&Value::String(error.to_string()), 100)));
    }
    (label, detail)
}

/// What the follow shows on stderr.
enum Display {
    Quiet {
        spinner: Option<ProgressBar>,
    },
    /// indicatif bars, one per execution (stderr is a terminal).
    Bars {
        multi: MultiProgress,
        bars: BTreeMap<i64, (ProgressBar, usize)>,
        out: Out,
    },
    /// One line per change (stderr is not a terminal).
    Lines {
        out: Out,
    },
    /// The output of each execution as it ends, read by [`Display::flush`].
    Output {
        out: Out,
        printed: std::collections::HashSet<i64>,
        queue: Vec<i64>,
    },
}

impl Display {
    fn new(show: Show) -> Display {
        let terminal = std::io::stderr().is_terminal();
        let out = Out { format: output::Format::Table, color: output::color_allowed(terminal) };
        match (show, terminal) {
            (Show::Quiet, true) => {
                let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                spinner.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
                spinner.enable_steady_tick(Duration::from_millis(100));
                Display::Quiet { spinner: Some(spinner) }
            }
            (Show::Quiet, false) => Display::Quiet { spinner: None },
            (Show::Progress, true) => Display::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: BTreeMap::new(),
                out,
            },
            (Show::Progress, false) => Display::Lines { out },
            (Show::Output, _) => Display::Output { out, printed: Default::default(), queue: Vec::new() },
        }
    }

    fn note(&self, text: &str) {
        match self {
            Display::Bars { multi, .. } => {
                let _ = multi.println(format!("note: {text}"));
            }
            Display::Quiet { spinner: Some(s) } => s.println(format!("note: {text}")),
            _ => eprintln!("note: {text}"),
        }
    }

    fn changed(&mut self, execution: &Value, depth: usize, is_root: bool, started: Instant) {
        match self {
            Display::Quiet { spinner } => {
                if let Some(s) = spinner.as_ref().filter(|_| is_root) {
                    let (label, detail) = describe(execution, &Out { format: output::Format::Table, color: false });
                    s.set_message(format!("waiting for {label}: {detail}"));
                }
            }
            Display::Lines { out } => {
                let (label, detail) = describe(execution, out);
                let at = output::duration(started.elapsed().as_secs_f64());
                eprintln!("[{at:>6}] {}{label}  {detail}", "  ".repeat(depth));
            }
            Display::Bars { multi, bars, out } => {
                let id = execution_id(execution).unwrap_or_default();
                let bar = bars.entry(id).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(ProgressStyle::with_template("{prefix}{spinner} {msg}").expect("a valid template"));
                    bar.set_prefix("  ".repeat(depth));
                    bar.enable_steady_tick(Duration::from_millis(100));
                    (bar, depth)
                });
                let (label, detail) = describe(execution, out);
                if is_final(execution) {
                    let mark = match execution["status"].as_str() {
                        Some("succeeded") => out.paint(Paint::Green, "✓"),
                        Some("succeeded_with_errors") => out.paint(Paint::Yellow, "!"),
                        _ => out.paint(Paint::Red, "✗"),
                    };
                    bar.0.set_style(ProgressStyle::with_template("{prefix}{msg}").expect("a valid template"));
                    bar.0.finish_with_message(format!("{mark} {label}  {detail}"));
                } else {
                    bar.0.set_message(format!("{label}  {detail}"));
                }
            }
            Display::Output { out, printed, queue } => {
                let id = execution_id(execution).unwrap_or_default();
                if is_final(execution) {
                    if printed.insert(id) {
                        queue.push(id);
                    }
                } else {
                    let (label, detail) = describe(execution, out);
                    eprintln!("{}{label}  {detail}", "  ".repeat(depth));
                }
            }
        }
    }

    /// Prints the output of the executions that ended since the last call (`tail`): lists
    /// and the stream leave stdout and stderr out, so each is read once, as it ends.
    async fn flush(&mut self, api: &Api, root: i64) -> Result<(), CliError> {
        let Display::Output { out, queue, .. } = self else { return Ok(()) };
        let mut ended = std::mem::take(queue);
        // Tasks in the order they were created; the root (which ends last) after them.
        ended.sort_by_key(|id| (*id == root, *id));
        for id in ended {
            let execution = api.get(&format!("/api/v1/executions/{id}"), &[]).await?;
            let (label, detail) = describe(&execution, out);
            println!("{}", out.paint(Paint::Bold, &format!("== {label}  {detail}")));
            for stream in ["stdout", "stderr"] {
                if let Some(t) = execution["result"][stream].as_str().filter(|t| !t.is_empty()) {
                    println!("{}", out.paint(Paint::Dim, &format!("-- {stream}")));
                    println!("{}", t.trim_end());
                }
            }
        }
        Ok(())
    }

    /// Refreshes elapsed times of running executions.
    fn tick(&mut self, tree: &Tree, _started: Instant) {
        if let Display::Bars { bars, out, .. } = self {
            for (id, (bar, _)) in bars.iter() {
                if let Some(execution) = tree.nodes.get(id).filter(|e| !is_final(e)) {
                    let (label, detail) = describe(execution, out);
                    bar.set_message(format!("{label}  {detail}"));
                }
            }
        }
    }

    fn finish(&mut self) {
        match self {
            Display::Quiet { spinner: Some(s) } => s.finish_and_clear(),
            // The command prints the whole tree next: the live lines make way for it.
            Display::Bars { multi, bars, .. } => {
                for (bar, _) in bars.values() {
                    bar.finish_and_clear();
                }
                let _ = multi.clear();
            }
            _ => {}
        }
    }
}
