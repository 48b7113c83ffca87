// The live event log: what the stack told this owner's app (GET /v1/events, the same documents
// the EventBridge bus and the webhooks carry), read with a cursor the way a client catches up.

import { $, announce, h, when } from "./dom.js";
import { poll } from "./poll.js";
import { session } from "./state.js";

const SHOWN = 200;
const view = { cursor: null, events: [], watch: null };

/** What each event means to a person, from its type and ids. */
function describe(event) {
  const id = event.generation_id || event.job_id || event.selfie_id || event.image_id || event.model_id;
  const [subject, what] = event.type.split(".");
  const text = {
    "avatar.stored": `Avatar ${event.avatar?.index ?? ""} stored (${event.avatar?.width}×${event.avatar?.height})`,
  }[event.type];
  return { title: text ?? `${subject.replace("_", " ")} ${what}`, id };
}

function render() {
  const list = $("#event-list");
  const shown = view.events.slice(-SHOWN).reverse();
  list.replaceChildren(
    ...shown.map((event) => {
      const { title, id } = describe(event);
      return h(
        "li",
        { class: "event-item" },
        h("code", { class: "event-type" }, event.type),
        h("span", { class: "event-title" }, title),
        h("span", { class: "muted small" }, `${id ?? ""} · ${when(event.occurred_at)}`),
        event.reason ? h("span", { class: "event-reason" }, event.reason) : "",
      );
    }),
  );
  $("#events-empty").hidden = view.events.length > 0;
  $("#events-count").textContent = view.events.length ? `${view.events.length}` : "";
}

async function readNew() {
  const fresh = [];
  for (;;) {
    const page = await session.api.request("GET", "/events", { query: { since: view.cursor } });
    fresh.push(...page.items);
    view.cursor = page.next_cursor;
    if (!page.has_more) break;
  }
  return fresh;
}

export function startEvents() {
  stopEvents();
  view.watch = poll(readNew, {
    interval: 3000,
    onValue(fresh) {
      if (!fresh.length) return;
      view.events.push(...fresh);
      render();
      announce(`${fresh.length} new event${fresh.length === 1 ? "" : "s"}.`);
    },
  });
}

export function stopEvents() {
  view.watch?.stop();
  Object.assign(view, { cursor: null, events: [], watch: null });
  render();
}
