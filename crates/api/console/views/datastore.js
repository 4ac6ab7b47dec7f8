// #/datastore: the keys of the tenant (and the user's own), values masked: an encrypted
// value is never shown (the list answers "********" for it anyway); plain values are hidden
// behind a "show" button. Editors and admins get a form to set a key.

import { h, replace, heading, when } from "../dom.js";
import { get, post, del } from "../api.js";

const MASK = "••••";

export async function render(main, _params, ctx) {
  const canWrite = ctx.me.role === "admin" || ctx.me.role === "editor";
  const tbody = h("tbody", { id: "datastore-rows" });
  const status = h("p", { class: "live-status", id: "datastore-status", "aria-live": "polite" });
  replace(
    main,
    heading("Datastore"),
    status,
    h("div", { class: "table-wrap" }, h("table", { class: "list" }, h("caption", { class: "sr-only" }, "Datastore keys"), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Value"), h("th", { scope: "col", class: "wide" }, "Scope"), h("th", { scope: "col", class: "wide" }, "Expires"), canWrite ? h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Delete")) : null)), tbody)),
    canWrite ? setForm(load, status) : h("p", { class: "muted" }, "Your role can read keys but not set them."),
  );

  async function load() {
    const [tenant, user] = await Promise.all([get("/api/v1/datastore?limit=1000"), get("/api/v1/datastore?scope=user&limit=1000").catch(() => ({ data: [] }))]);
    const items = [...tenant.data, ...user.data];
    status.textContent = `${items.length} keys.`;
    replace(tbody, items.map((item) => row(item, canWrite, load, status)));
  }
  await load();
}

function row(item, canWrite, reload, status) {
  const value = h("code", { class: "masked" }, MASK);
  const show = item.encrypted
    ? h("span", { class: "muted" }, " (encrypted)")
    : h("button", { type: "button", class: "link", "aria-label": `Show the value of ${item.key}`, "aria-pressed": "false" }, "show");
  if (!item.encrypted) {
    show.addEventListener("click", () => {
      const shown = show.getAttribute("aria-pressed") === "true";
      value.textContent = shown ? MASK : JSON.stringify(item.value);
      show.setAttribute("aria-pressed", String(!shown));
      show.textContent = shown ? "show" : "hide";
    });
  }
  const remove = canWrite
    ? h("button", { type: "button", class: "link danger", "aria-label": `Delete ${item.key}` }, "delete")
    : null;
  if (remove) {
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete ${item.key}?`)) return;
      try {
        await del(`/api/v1/datastore/${encodeURIComponent(item.key)}${item.scope === "user" ? "?scope=user" : ""}`);
        await reload();
      } catch (e) {
        status.textContent = `Cannot delete ${item.key}: ${e.message}`;
      }
    });
  }
  return h("tr", { dataset: { key: item.key } }, h("th", { scope: "row", class: "mono" }, item.key), h("td", {}, value, show), h("td", { class: "wide" }, item.scope), h("td", { class: "wide" }, when(item.expires_at)), remove ? h("td", {}, remove) : null);
}

function setForm(reload, status) {
  const key = h("input", { id: "kv-key", name: "key", required: true, autocomplete: "off" });
  const value = h("input", { id: "kv-value", name: "value", required: true, autocomplete: "off", "aria-describedby": "kv-value-hint" });
  const encrypted = h("input", { id: "kv-encrypted", name: "encrypted", type: "checkbox" });
  const ttl = h("input", { id: "kv-ttl", name: "ttl_seconds", type: "number", min: "1", step: "1", inputmode: "numeric" });
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h(
    "form",
    { class: "card", id: "datastore-form", "aria-labelledby": "kv-title" },
    h("h2", { id: "kv-title" }, "Set a key"),
    h("div", { class: "field" }, h("label", { for: "kv-key" }, "Key"), key),
    h("div", { class: "field" }, h("label", { for: "kv-value" }, "Value"), value, h("small", { id: "kv-value-hint" }, "JSON (e.g. 3, true, {\"a\":1}) or plain text.")),
    h("div", { class: "field check" }, encrypted, h("label", { for: "kv-encrypted" }, "Encrypt (a secret)")),
    h("div", { class: "field" }, h("label", { for: "kv-ttl" }, "Expires after (seconds, optional)"), ttl),
    error,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save")),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    let v;
    try {
      v = JSON.parse(value.value);
    } catch {
      v = value.value;
    }
    const body = { key: key.value.trim(), value: v, encrypted: encrypted.checked };
    if (ttl.value) body.ttl_seconds = Number(ttl.value);
    try {
      await post("/api/v1/datastore", body);
      status.textContent = `Saved ${body.key}.`;
      form.reset();
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}


