// #/executions: the execution list, live. The first page comes from the REST API; after
// that every `execution` change from the stream updates or inserts its row (a change carries
// the full row), so new runs appear and finish without a reload. Filters by status, action
// and rule apply to both.

import { h, replace, heading, badge, when, duration, STATUSES, notice } from "../dom.js";
import { get, query } from "../api.js";

const PAGE = 50;

export async function render(main, _params, ctx) {
  const saved = new URLSearchParams(sessionStorage.getItem("attune.execution-filters") || "");
  const status = h("select", { id: "filter-status", name: "status" }, h("option", { value: "" }, "Any status"), STATUSES.map((s) => h("option", { value: s, selected: saved.get("status") === s }, s.replaceAll("_", " "))));
  const action = h("input", { id: "filter-action", name: "action", placeholder: "pack.action", value: saved.get("action") || "", autocomplete: "off" });
  const rule = h("input", { id: "filter-rule", name: "rule", placeholder: "pack.rule", value: saved.get("rule") || "", autocomplete: "off" });
  const filters = h(
    "form",
    { class: "filters", id: "execution-filters", role: "search", "aria-label": "Filter executions" },
    h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), status),
    h("div", { class: "field" }, h("label", { for: "filter-action" }, "Action"), action),
    h("div", { class: "field" }, h("label", { for: "filter-rule" }, "Rule"), rule),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Filter")),
  );
  const live = h("p", { id: "executions-status", class: "live-status", "aria-live": "polite" }, "Loading…");
  const tbody = h("tbody", { id: "execution-rows" });
  const more = h("button", { type: "button", id: "executions-more", hidden: true }, "Load older");
  const table = h(
    "div",
    { class: "table-wrap" },
    h("table", { class: "list", id: "execution-table" }, h("caption", { class: "sr-only" }, "Executions, newest first"), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "ID"), h("th", { scope: "col" }, "Action"), h("th", { scope: "col" }, "Status"), h("th", { scope: "col", class: "wide" }, "Rule"), h("th", { scope: "col", class: "wide" }, "Created"), h("th", { scope: "col" }, "Duration"))), tbody),
  );
  replace(main, heading("Executions"), filters, live, table, more);

  const rows = new Map(); // id → execution
  let total = 0;
  let offset = 0;
  let touched = new Set(); // ids changed by the stream while a fetch was in flight
  const current = () => ({ status: status.value, action: action.value.trim(), rule: rule.value.trim() });
  const matches = (e, f) => (!f.status || e.status === f.status) && (!f.action || e.action_ref === f.action) && (!f.rule || e.rule_ref === f.rule);

  function draw() {
    const sorted = [...rows.values()].sort((a, b) => b.id - a.id);
    replace(tbody, sorted.map(row));
    if (sorted.length === 0) tbody.append(h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No executions yet.")));
    live.textContent = `${sorted.length} of ${Math.max(total, sorted.length)} executions shown · ${ctx.stream.state === "live" ? "updating live" : ctx.stream.state}`;
    more.hidden = sorted.length >= total;
  }

  async function load(reset) {
    const f = current();
    if (reset) {
      offset = 0;
    }
    touched = new Set();
    try {
      const page = await get(`/api/v1/executions${query({ ...f, limit: PAGE, offset })}`);
      if (reset) {
        for (const id of [...rows.keys()]) if (!touched.has(id)) rows.delete(id);
      }
      for (const e of page.data) if (!touched.has(e.id)) rows.set(e.id, e);
      total = page.total;
      offset += page.data.length;
      draw();
    } catch (e) {
      live.textContent = "";
      main.append(notice(`Cannot load executions: ${e.message}`));
    }
  }

  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("attune.execution-filters", new URLSearchParams(current()).toString());
    rows.clear();
    load(true);
  });
  status.addEventListener("change", () => filters.requestSubmit());
  more.addEventListener("click", () => load(false));

  const off = ctx.stream.on((change) => {
    if (change.event === "stream.subscribed") {
      // Connected (or reconnected without history): the REST page closes any gap.
      if (!change.resumed) load(true);
      else draw();
      return;
    }
    if (change.entity_type !== "execution") return;
    const e = { ...change.data, id: change.entity_id };
    touched.add(e.id);
    if (matches(e, current())) {
      if (!rows.has(e.id)) total += 1;
      rows.set(e.id, e);
    } else if (rows.delete(e.id)) {
      total = Math.max(total - 1, 0);
    }
    draw();
  });
  let loaded = false;
  const offState = ctx.stream.onStatus(() => loaded && draw());
  await load(true);
  loaded = true;
  return () => {
    off();
    offState();
  };
}

function row(e) {
  return h(
    "tr",
    { dataset: { executionId: String(e.id), status: e.status } },
    h("td", {}, h("a", { href: `#/executions/${e.id}`, "aria-label": `Execution ${e.id}` }, `#${e.id}`)),
    h("td", {}, h("span", { class: "mono" }, e.action_ref), e.parent_id ? h("small", { class: "muted" }, ` in #${e.parent_id}`) : null),
    h("td", {}, badge(e.status)),
    h("td", { class: "wide" }, e.rule_ref || "—"),
    h("td", { class: "wide" }, when(e.created_at)),
    h("td", {}, duration(e.started_at, e.finished_at)),
  );
}
