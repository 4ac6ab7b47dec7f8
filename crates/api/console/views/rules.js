// #/rules: every rule with a switch that enables or disables it (PATCH /api/v1/rules/{id}
// {"enabled"}). System rules are read-only (the API answers 403); viewers cannot write.

import { h, replace, heading } from "../dom.js";
import { get, patch } from "../api.js";

export async function render(main, _params, ctx) {
  const live = h("p", { class: "live-status", id: "rules-status", "aria-live": "polite" }, "Loading…");
  const tbody = h("tbody", { id: "rule-rows" });
  replace(
    main,
    heading("Rules"),
    live,
    h("div", { class: "table-wrap" }, h("table", { class: "list" }, h("caption", { class: "sr-only" }, "Rules"), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Rule"), h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Runs"), h("th", { scope: "col", class: "wide" }, "Criteria"), h("th", { scope: "col" }, "Enabled"))), tbody)),
  );
  const canWrite = ctx.me.role === "admin" || ctx.me.role === "editor";
  const page = await get("/api/v1/rules?limit=1000");
  live.textContent = `${page.total} rules.`;
  replace(tbody, page.data.map((r) => row(r, canWrite, live)));
  if (page.data.length === 0) tbody.append(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No rules yet.")));
}

function row(r, canWrite, live) {
  const toggleId = `rule-enabled-${r.id}`;
  const toggle = h("input", {
    type: "checkbox",
    role: "switch",
    id: toggleId,
    class: "switch",
    checked: r.enabled,
    disabled: r.system || !canWrite,
    dataset: { ruleId: String(r.id), ruleRef: r.ref },
  });
  const text = h("span", { "aria-hidden": "true", class: "switch-text" }, r.enabled ? "on" : "off");
  toggle.addEventListener("change", async () => {
    const enabled = toggle.checked;
    toggle.disabled = true;
    try {
      const updated = await patch(`/api/v1/rules/${r.id}`, { enabled });
      toggle.checked = updated.enabled;
      text.textContent = updated.enabled ? "on" : "off";
      live.textContent = `Rule ${r.ref} ${updated.enabled ? "enabled" : "disabled"}.`;
    } catch (e) {
      toggle.checked = !enabled;
      live.textContent = `Cannot change ${r.ref}: ${e.message}`;
    } finally {
      toggle.disabled = false;
    }
  });
  return h(
    "tr",
    { dataset: { ruleRef: r.ref } },
    h("th", { scope: "row" }, h("span", { class: "mono" }, r.ref), r.description ? h("small", { class: "muted block" }, r.description) : null),
    h("td", { class: "mono" }, r.trigger),
    h("td", {}, h("a", { href: `#/actions/${encodeURIComponent(r.action)}`, class: "mono" }, r.action)),
    h("td", { class: "wide mono" }, r.criteria || "—"),
    h("td", {}, h("label", { class: "switch-label", for: toggleId }, toggle, h("span", { class: "sr-only" }, `Enable rule ${r.ref}`), text)),
  );
}
