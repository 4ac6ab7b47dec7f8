// The console's shell: login, the hash router (#/executions/42), the navigation, and the one
// live stream every view listens to. Each view module exports
// `render(main, params, ctx) → cleanup?`; ctx = {stream, me, navigate}.

import { h, replace, heading, notice } from "./dom.js";
import { get, login, forget, session, whenLoggedOut, ApiError } from "./api.js";
import { Stream } from "./stream.js";
import * as dashboard from "./views/dashboard.js";
import * as executions from "./views/executions.js";
import * as execution from "./views/execution.js";
import * as inquiries from "./views/inquiries.js";
import * as rules from "./views/rules.js";
import * as packs from "./views/packs.js";
import * as datastore from "./views/datastore.js";

const ROUTES = [
  [/^\/$/, dashboard, "dashboard"],
  [/^\/executions$/, executions, "executions"],
  [/^\/executions\/(\d+)$/, execution, "executions"],
  [/^\/inquiries$/, inquiries, "inquiries"],
  [/^\/rules$/, rules, "rules"],
  [/^\/packs$/, packs, "packs"],
  [/^\/packs\/([^/]+)$/, packs, "packs"],
  [/^\/actions\/([^/]+)$/, packs, "packs"],
  [/^\/datastore$/, datastore, "datastore"],
];

const main = document.getElementById("main");
const stream = new Stream();
// Reachable from the devtools console (and the browser tests, which cut it to test resuming).
window.attuneStream = stream;
const ctx = { stream, me: null, navigate: (hash) => (location.hash = hash) };
let cleanup = null;

function path() {
  return location.hash.replace(/^#/, "") || "/";
}

async function route() {
  if (cleanup) cleanup();
  cleanup = null;
  if (!session()) return showLogin();
  if (!ctx.me) {
    try {
      ctx.me = await get("/auth/me");
    } catch (e) {
      if (!session()) return showLogin();
      replace(main, heading("Attune"), notice(`The API does not answer: ${e.message}`));
      return;
    }
    signedIn();
  }
  const p = path();
  if (p === "/login") {
    location.hash = "#/";
    return;
  }
  for (const [pattern, view, section] of ROUTES) {
    const m = p.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("#nav a")) {
      if (a.dataset.route === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    replace(main);
    try {
      cleanup = (await view.render(main, { path: p, args: m.slice(1).map(decodeURIComponent) }, ctx)) || null;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return;
      main.append(notice(e.message));
    }
    focusTitle();
    return;
  }
  replace(main, heading("Not found"), h("p", {}, "No page at ", h("code", {}, p), ". ", h("a", { href: "#/" }, "Go to the dashboard.")));
  focusTitle();
}

// Move focus to the new page's heading so keyboard and screen-reader users land on it.
function focusTitle() {
  const title = document.getElementById("page-title");
  if (title && document.activeElement && !main.contains(document.activeElement)) title.focus({ preventScroll: true });
}

function signedIn() {
  document.getElementById("nav").hidden = false;
  document.getElementById("session").hidden = false;
  document.getElementById("whoami").textContent = `${ctx.me.login} (${ctx.me.role})`;
  stream.start();
  refreshInquiryCount();
}

function signedOut() {
  stream.stop();
  ctx.me = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("session").hidden = true;
}

function showLogin(message) {
  if (cleanup) cleanup();
  cleanup = null;
  signedOut();
  const error = h("p", { class: "form-error", role: "alert", id: "login-error" }, message || "");
  const user = h("input", { id: "login-name", name: "login", autocomplete: "username", required: true });
  const pass = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h(
    "form",
    { id: "login-form", class: "card login" },
    h("div", { class: "field" }, h("label", { for: "login-name" }, "Login"), user),
    h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), pass),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", id: "login-submit" }, "Sign in")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    try {
      await login(user.value, pass.value);
    } catch (err) {
      error.textContent = err.status === 401 ? "Wrong login or password." : err.message;
      return;
    }
    if (path() === "/login") location.hash = "#/";
    else route();
  });
  replace(main, heading("Sign in to Attune"), form);
  user.focus();
}

// The pending-inquiry count in the navigation, kept current from the stream.
async function refreshInquiryCount() {
  const el = document.getElementById("inquiry-count");
  try {
    const page = await get("/api/v1/inquiries?status=pending&limit=1");
    el.textContent = page.total ? String(page.total) : "";
    el.setAttribute("aria-label", `${page.total} pending`);
  } catch {
    el.textContent = "";
  }
}

stream.on((change) => {
  if (change.entity_type === "inquiry" || change.event === "stream.subscribed") refreshInquiryCount();
});

const STATES = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", offline: "offline" };
stream.onStatus((state) => {
  const el = document.getElementById("stream-state");
  el.textContent = STATES[state] || state;
  el.dataset.state = state;
});

document.getElementById("logout").addEventListener("click", () => {
  forget();
  showLogin();
});
whenLoggedOut(() => showLogin("Your session ended; sign in again."));
window.addEventListener("hashchange", route);
route();
