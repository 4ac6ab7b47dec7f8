// #/inquiries: the pending inquiries, each with a form generated from its JSON schema;
// answering POSTs /api/v1/inquiries/{id}/respond and the workflow waiting on it goes on.

import { h, replace, heading, when, notice, debounce } from "../dom.js";
import { get, post } from "../api.js";
import { schemaForm } from "../forms.js";

/** One pending inquiry: its prompt, where it waits, and its answer form. */
export function inquiryCard(q, answered) {
  const form = schemaForm(q.schema, {
    id: `inquiry-${q.id}`,
    submitLabel: "Send answer",
    onSubmit: async (response) => {
      await post(`/api/v1/inquiries/${q.id}/respond`, { response });
      replace(card, h("p", { class: "notice ok", role: "status" }, `Answered inquiry #${q.id}.`));
      answered();
    },
  });
  const card = h(
    "article",
    { class: "card inquiry", id: `inquiry-card-${q.id}`, dataset: { inquiryId: String(q.id), executionId: String(q.execution_id) }, "aria-labelledby": `inquiry-${q.id}-prompt` },
    h("h3", { id: `inquiry-${q.id}-prompt` }, q.prompt),
    h("p", { class: "muted" }, "For execution ", h("a", { href: `#/executions/${q.execution_id}` }, `#${q.execution_id}`), q.expires_at ? ` · expires ${when(q.expires_at)}` : ""),
    form,
  );
  return card;
}

/**
 * Makes `container` show a card for each of `inquiries`: cards already shown stay as they
 * are (a half-filled form must not be wiped by a refresh), the others go or come.
 */
export function syncCards(container, inquiries, answered) {
  const ids = new Set(inquiries.map((q) => String(q.id)));
  for (const card of [...container.querySelectorAll("article.inquiry")]) if (!ids.has(card.dataset.inquiryId)) card.remove();
  for (const q of inquiries) {
    if (!container.querySelector(`article.inquiry[data-inquiry-id="${q.id}"]`)) container.append(inquiryCard(q, answered));
  }
}

export async function render(main, _params, ctx) {
  const live = h("p", { class: "live-status", id: "inquiries-status", "aria-live": "polite" }, "Loading…");
  const list = h("div", { id: "inquiry-list", class: "cards" });
  replace(main, heading("Inquiries"), live, list);

  async function load() {
    try {
      const page = await get("/api/v1/inquiries?status=pending&limit=1000");
      live.textContent = page.total === 0 ? "No inquiry is waiting for an answer." : `${page.total} waiting for an answer.`;
      syncCards(list, page.data, () => refetch());
    } catch (e) {
      list.append(notice(`Cannot load inquiries: ${e.message}`));
    }
  }
  const refetch = debounce(load, 150);
  const off = ctx.stream.on((c) => (c.entity_type === "inquiry" || c.event === "stream.subscribed") && refetch());
  await load();
  return () => {
    off();
    refetch.cancel();
  };
}
