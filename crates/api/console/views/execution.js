// #/executions/42: one execution — its parameters (secret ones arrive masked from the API),
// its result and output, its attempts, and for a workflow (or with-items run) the tree of
// its tasks with any pending inquiry's form. Everything re-reads on the stream's changes of
// this execution and of the executions below it.

import { h, replace, heading, badge, when, duration, json, notice, debounce, FINAL } from "../dom.js";
import { get, post, query, ApiError } from "../api.js";
import { syncCards } from "./inquiries.js";

export async function render(main, { args }, ctx) {
  const id = Number(args[0]);
  const summary = h("section", { id: "execution-summary", "aria-labelledby": "page-title" });
  const tree = h("section", { id: "execution-tree", "aria-label": "Workflow tree" });
  const asks = h("section", { id: "execution-inquiries", "aria-label": "Pending inquiries" });
  const result = h("section", { id: "execution-result", "aria-label": "Result" });
  const params = h("section", { id: "execution-parameters", "aria-label": "Parameters" });
  const history = h("section", { id: "execution-history", "aria-label": "Attempts and history" });
  const status = h("p", { class: "live-status", id: "execution-live", "aria-live": "polite" });
  asks.append(h("h2", {}, "Waiting for an answer"));
  asks.hidden = true;
  // The tree and the questions side by side on a wide screen (one column on a phone).
  replace(main, heading(`Execution #${id}`), status, summary, h("div", { class: "split" }, tree, asks), result, params, history);

  let execution = null;
  const below = new Set(); // ids of the executions in the tree

  async function loadExecution() {
    try {
      execution = await get(`/api/v1/executions/${id}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        replace(main, heading(`Execution #${id}`), notice("No such execution."));
        return;
      }
      throw e;
    }
    drawSummary();
    drawResult();
    replace(params, h("h2", {}, "Parameters"), json(execution.parameters));
    loadHistory();
  }

  function drawSummary() {
    const e = execution;
    const cancel = FINAL.includes(e.status) || e.status === "canceling"
      ? null
      : h("button", { type: "button", id: "execution-cancel", onclick: cancelIt }, "Cancel");
    replace(
      summary,
      h(
        "dl",
        { class: "facts" },
        fact("Status", badge(e.status)),
        fact("Action", h("a", { href: `#/actions/${encodeURIComponent(e.action_ref)}`, class: "mono" }, e.action_ref)),
        fact("Rule", e.rule_ref || "— (manual run)"),
        e.parent_id ? fact("Part of", h("a", { href: `#/executions/${e.parent_id}` }, `#${e.parent_id}`), e.workflow_task ? ` (task ${e.workflow_task})` : "") : null,
        fact("Attempt", `${e.attempt} of ${e.max_attempts}`),
        fact("Worker", e.worker || "—"),
        fact("Created", when(e.created_at)),
        fact("Started", when(e.started_at)),
        fact("Finished", when(e.finished_at)),
        fact("Duration", duration(e.started_at, e.finished_at)),
      ),
      cancel,
    );
    status.textContent = FINAL.includes(e.status) ? `Finished: ${e.status.replaceAll("_", " ")}.` : `Now ${e.status}; updating live.`;
  }

  async function cancelIt(ev) {
    ev.target.disabled = true;
    try {
      await post(`/api/v1/executions/${id}/cancel`);
    } catch (e) {
      summary.append(notice(`Cannot cancel: ${e.message}`));
    }
  }

  function drawResult() {
    const r = execution.result;
    if (!r) {
      replace(result, h("h2", {}, "Result"), h("p", { class: "muted" }, FINAL.includes(execution.status) ? "No result." : "Not finished yet."));
      return;
    }
    replace(
      result,
      h("h2", {}, "Result"),
      r.error ? h("p", { class: "notice error", id: "execution-error" }, r.error) : null,
      r.output !== undefined && r.output !== null ? [h("h3", {}, "Output"), json(r.output)] : null,
      r.stdout ? [h("h3", {}, "stdout"), h("pre", { class: "out", id: "execution-stdout" }, r.stdout)] : null,
      r.stderr ? [h("h3", {}, "stderr"), h("pre", { class: "out" }, r.stderr)] : null,
      r.exit_code !== undefined && r.exit_code !== null ? h("p", {}, `Exit code ${r.exit_code}`, r.truncated ? " (output truncated)" : "") : null,
    );
  }

  // Attempts and lifecycle from the audit log (admins may read it; others see the counter).
  async function loadHistory() {
    try {
      const page = await get(`/api/v1/audit${query({ entity_type: "execution", entity_id: id, limit: 100 })}`);
      const entries = [...page.data].sort((a, b) => a.id - b.id);
      replace(history, h("h2", {}, "History"), h("ol", { class: "history" }, entries.map((a) => h("li", {}, h("time", { datetime: a.timestamp }, when(a.timestamp)), " ", a.action.replace("execution.", ""), a.actor && a.actor.login ? ` by ${a.actor.login}` : a.actor ? ` by ${a.actor.type}` : ""))));
    } catch {
      replace(history);
    }
  }

  async function loadTree() {
    const page = await get(`/api/v1/executions/${id}/children?depth=all&limit=1000`);
    below.clear();
    for (const c of page.data) below.add(c.id);
    tree.hidden = page.data.length === 0;
    if (tree.hidden) return;
    const kids = new Map();
    for (const c of page.data) {
      if (!kids.has(c.parent_id)) kids.set(c.parent_id, []);
      kids.get(c.parent_id).push(c);
    }
    const branch = (parent) =>
      h("ul", { class: "tree" }, (kids.get(parent) || []).map((c) => h("li", { dataset: { executionId: String(c.id), task: c.workflow_task || "", status: c.status } }, h("a", { href: `#/executions/${c.id}` }, `#${c.id}`), " ", h("strong", {}, c.workflow_task || (c.item_index !== null && c.item_index !== undefined ? `item ${c.item_index}` : "")), " ", h("span", { class: "mono muted" }, c.action_ref), " ", badge(c.status), kids.has(c.id) ? branch(c.id) : null)));
    replace(tree, h("h2", {}, "Workflow"), branch(id));
  }

  async function loadInquiries() {
    const page = await get("/api/v1/inquiries?status=pending&limit=1000");
    const mine = page.data.filter((q) => q.execution_id === id || below.has(q.execution_id));
    asks.hidden = mine.length === 0;
    syncCards(asks, mine, () => refetchInquiries());
  }

  const refetchExecution = debounce(() => loadExecution().catch(() => {}), 150);
  const refetchTree = debounce(() => loadTree().then(loadInquiries).catch(() => {}), 150);
  const refetchInquiries = debounce(() => loadInquiries().catch(() => {}), 150);
  const off = ctx.stream.on((change) => {
    if (change.event === "stream.subscribed") {
      refetchExecution();
      refetchTree();
      return;
    }
    if (change.entity_type === "execution") {
      const parent = change.data && change.data.parent_id;
      if (change.entity_id === id) {
        // The change carries the row: show the new status at once, then re-read the rest.
        if (execution && change.data && change.data.status) {
          execution = { ...execution, status: change.data.status };
          drawSummary();
        }
        refetchExecution();
      }
      if (parent === id || below.has(parent) || below.has(change.entity_id)) refetchTree();
    } else if (change.entity_type === "inquiry") {
      refetchInquiries();
    }
  });

  await loadExecution();
  if (execution) {
    await loadTree();
    await loadInquiries();
  }
  return () => {
    off();
    refetchExecution.cancel();
    refetchTree.cancel();
    refetchInquiries.cancel();
  };
}

function fact(term, ...value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, ...value));
}
