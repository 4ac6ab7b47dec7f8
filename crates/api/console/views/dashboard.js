// #/: counts of executions by status (the list endpoint's `total` per status), pending
// inquiries, rules, and a sparkline of executions finished per minute over the last 30
// minutes (from the newest 1000 executions). Re-read when the stream reports changes.

import { h, replace, heading, debounce, badge, STATUSES } from "../dom.js";
import { get, query, ApiError } from "../api.js";

const MINUTES = 30;

export async function render(main, _params, ctx) {
  const counts = h("ul", { class: "counts", id: "dashboard-counts", "aria-label": "Executions by status" });
  const others = h("ul", { class: "counts", id: "dashboard-other" });
  const spark = h("figure", { class: "card spark", id: "throughput" });
  const status = h("p", { class: "live-status", id: "dashboard-status", "aria-live": "polite" });
  replace(main, heading("Dashboard"), status, h("h2", {}, "Executions"), counts, spark, h("h2", {}, "Definitions and questions"), others);

  async function load() {
    const totals = await Promise.all(STATUSES.map((s) => get(`/api/v1/executions${query({ status: s, limit: 1 })}`).then((p) => p.total)));
    replace(counts, STATUSES.map((s, i) => h("li", { class: "card count", dataset: { status: s } }, h("a", { href: "#/executions", onclick: () => sessionStorage.setItem("attune.execution-filters", `status=${s}`) }, h("span", { class: "n" }, String(totals[i])), badge(s)))));
    const [inq, rules, packs] = await Promise.all([get("/api/v1/inquiries?status=pending&limit=1"), get("/api/v1/rules?limit=1"), get("/api/v1/packs?limit=1")]);
    replace(others, count(inq.total, "pending inquiries", "#/inquiries"), count(rules.total, "rules", "#/rules"), count(packs.total, "packs", "#/packs"));
    const recent = await get("/api/v1/executions?limit=1000");
    drawSpark(spark, perMinute(recent.data));
    status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
  }
  // A load that fails (the API slow or restarting) says so and is tried again shortly.
  let retry = null;
  async function attempt() {
    try {
      await load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      status.textContent = `Could not load the figures (${e.message}); trying again.`;
      clearTimeout(retry);
      retry = setTimeout(attempt, 2000);
    }
  }
  const refetch = debounce(attempt, 1000);
  const off = ctx.stream.on((c) => (c.entity_type === "execution" || c.entity_type === "inquiry") && refetch());
  await attempt();
  return () => {
    off();
    refetch.cancel();
    clearTimeout(retry);
  };
}

function count(n, label, href) {
  return h("li", { class: "card count" }, h("a", { href }, h("span", { class: "n" }, String(n)), label));
}

/** Executions finished in each of the last MINUTES minutes, oldest first. */
function perMinute(executions) {
  const now = Math.floor(Date.now() / 60000);
  const buckets = new Array(MINUTES).fill(0);
  for (const e of executions) {
    if (!e.finished_at) continue;
    const ago = now - Math.floor(new Date(e.finished_at).getTime() / 60000);
    if (ago >= 0 && ago < MINUTES) buckets[MINUTES - 1 - ago] += 1;
  }
  return buckets;
}

function drawSpark(figure, buckets) {
  const w = 300;
  const ht = 60;
  const max = Math.max(1, ...buckets);
  const step = w / (buckets.length - 1);
  const points = buckets.map((n, i) => `${(i * step).toFixed(1)},${(ht - 4 - (n / max) * (ht - 8)).toFixed(1)}`).join(" ");
  const total = buckets.reduce((a, b) => a + b, 0);
  const svg = h(
    "svg:svg",
    { viewBox: `0 0 ${w} ${ht}`, width: "100%", height: String(ht), role: "img", "aria-labelledby": "spark-caption", preserveAspectRatio: "none" },
    h("svg:polyline", { points, fill: "none", stroke: "currentColor", "stroke-width": "2", "vector-effect": "non-scaling-stroke" }),
  );
  replace(figure, svg, h("figcaption", { id: "spark-caption" }, `${total} ${total === 1 ? "execution" : "executions"} finished in the last ${MINUTES} minutes (peak ${Math.max(...buckets)} per minute).`));
}
