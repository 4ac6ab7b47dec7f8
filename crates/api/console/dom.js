// Small DOM helpers: build elements without innerHTML (API data is never parsed as HTML).

/** h("a", {href: "#/x", class: "c", onclick: fn}, "text", child) → element. */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value" && "value" in el) {
      el.value = value;
    } else if (name === "checked" || name === "selected") {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A timestamp in the viewer's locale, or "—". */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

/** How long between two timestamps (the second defaults to now), e.g. "1.2 s", "3 min". */
export function duration(fromIso, toIso) {
  if (!fromIso) return "—";
  const ms = (toIso ? new Date(toIso) : new Date()) - new Date(fromIso);
  if (ms < 1000) return `${Math.max(ms, 0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3600000) return `${Math.round(ms / 60000)} min`;
  return `${(ms / 3600000).toFixed(1)} h`;
}

export const FINAL = ["succeeded", "failed", "canceled", "succeeded_with_errors"];
export const STATUSES = ["requested", "scheduled", "running", "paused", "canceling", "succeeded", "failed", "canceled", "succeeded_with_errors"];

/** A status shown as text in a coloured badge (the text, not the colour, carries it). */
export function badge(status) {
  return h("span", { class: `badge status-${status}`, dataset: { status } }, status.replaceAll("_", " "));
}

/** JSON, pretty-printed, in a <pre>. */
export function json(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** A page heading that receives focus on navigation (screen readers announce the page). */
export function heading(text) {
  return h("h1", { tabindex: "-1", id: "page-title" }, text);
}

/** A message in a live region: role=alert for errors, status otherwise. */
export function notice(text, kind = "error") {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

/** Calls `fn` at most once per `ms`, trailing (for re-fetches triggered by bursts of changes). */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
