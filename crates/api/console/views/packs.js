// #/packs, #/packs/{ref}, #/actions/{ref}: browse packs and their actions, and run an action
// from a form generated from its parameter schema (POST /api/v1/executions, then its page).

import { h, replace, heading, notice } from "../dom.js";
import { get, post, query } from "../api.js";
import { schemaForm } from "../forms.js";

export async function render(main, { path, args }, ctx) {
  if (path.startsWith("/actions/")) return action(main, args[0], ctx);
  if (args.length) return pack(main, args[0]);
  return packs(main);
}

async function packs(main) {
  const page = await get("/api/v1/packs?limit=1000");
  replace(
    main,
    heading("Packs"),
    h("p", { class: "muted" }, `${page.total} packs.`),
    h(
      "ul",
      { class: "cards", id: "pack-list" },
      page.data.map((p) =>
        h(
          "li",
          { class: "card", dataset: { packRef: p.ref } },
          h("h2", {}, h("a", { href: `#/packs/${encodeURIComponent(p.ref)}` }, p.label || p.ref)),
          h("p", { class: "muted" }, h("span", { class: "mono" }, p.ref), ` · version ${p.version}`, p.system ? " · system" : ""),
          p.description ? h("p", {}, p.description) : null,
        ),
      ),
    ),
  );
}

async function pack(main, ref) {
  const [page, rules] = await Promise.all([get(`/api/v1/actions${query({ pack: ref, limit: 1000 })}`), get(`/api/v1/rules${query({ pack: ref, limit: 1000 })}`)]);
  replace(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/packs" }, "Packs"), " / "),
    heading(`Pack ${ref}`),
    h("h2", {}, "Actions"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "list", id: "action-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Action"), h("th", { scope: "col" }, "Runner"), h("th", { scope: "col", class: "wide" }, "Description"))),
        h("tbody", {}, page.data.map((a) => h("tr", { dataset: { actionRef: a.ref } }, h("th", { scope: "row" }, h("a", { href: `#/actions/${encodeURIComponent(a.ref)}`, class: "mono" }, a.ref)), h("td", {}, a.runner_type), h("td", { class: "wide" }, a.description || "")))),
      ),
    ),
    page.data.length === 0 ? h("p", { class: "muted" }, "No actions.") : null,
    h("h2", {}, "Rules"),
    rules.data.length ? h("ul", {}, rules.data.map((r) => h("li", {}, h("span", { class: "mono" }, r.ref), `: ${r.trigger} → ${r.action}`, r.enabled ? "" : " (disabled)"))) : h("p", { class: "muted" }, "No rules."),
  );
}

async function action(main, ref, ctx) {
  const a = await get(`/api/v1/actions/ref/${encodeURIComponent(ref)}`);
  const canRun = ctx.me.role !== "viewer";
  const form = schemaForm(a.parameters, {
    id: "run-action",
    submitLabel: "Run",
    onSubmit: async (parameters) => {
      const execution = await post("/api/v1/executions", { action: a.ref, parameters });
      ctx.navigate(`#/executions/${execution.id}`);
    },
  });
  replace(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/packs" }, "Packs"), " / ", h("a", { href: `#/packs/${encodeURIComponent(a.pack)}` }, a.pack), " / "),
    heading(`Action ${a.ref}`),
    a.description ? h("p", {}, a.description) : null,
    h("p", { class: "muted" }, `Runner ${a.runner_type}`, a.timeout_seconds ? ` · timeout ${a.timeout_seconds} s` : "", a.enabled ? "" : " · disabled"),
    h("p", {}, h("a", { href: `#/executions`, id: "action-history" }, "Recent executions"), " (filter by this action there)"),
    h("section", { class: "card", "aria-labelledby": "run-title" }, h("h2", { id: "run-title" }, "Run"), canRun ? form : notice("Your role (viewer) cannot run actions.", "info")),
  );
  main.querySelector("#action-history").addEventListener("click", () => sessionStorage.setItem("attune.execution-filters", new URLSearchParams({ action: a.ref }).toString()));
}
