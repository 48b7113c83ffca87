// "How this was called": the last requests the page made for what the user did (polls left
// out), each with its method, URL, headers (token elided), body, status and answer as the API
// gave it, and a copy-pasteable curl. Everything is text nodes.

import { calls, curlFor } from "./api.js";
import { $, h, toast } from "./dom.js";

const pretty = (text) => {
  if (!text) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
};

function path(url) {
  try {
    const parsed = new URL(url);
    return `${parsed.pathname}${parsed.search}`;
  } catch {
    return url;
  }
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    toast("info", "Copy it by hand", "The browser did not allow the clipboard here.");
  }
  setTimeout(() => {
    button.textContent = "Copy curl";
  }, 2000);
}

/** A block of code; it scrolls when wide, so a keyboard can reach it (tabindex 0). */
const code = (extra, text) => h("pre", { class: `code ${extra}`.trim(), tabindex: "0" }, text);

function entryView(entry) {
  const status = entry.status === null ? "waiting…" : `${entry.status} ${entry.statusText ?? ""}`.trim();
  const headers = Object.entries(entry.headers ?? {})
    .map(([name, value]) => `${name}: ${value}`)
    .join("\n");
  const curl = curlFor(entry);
  const copyButton = h("button", { type: "button", class: "btn btn-secondary btn-sm" }, "Copy curl");
  copyButton.addEventListener("click", () => copy(curl, copyButton));
  const answerHeaders = entry.retryAfter ? `Retry-After: ${entry.retryAfter}\n\n` : "";
  return h(
    "div",
    { class: "call" },
    h(
      "dl",
      { class: "call-facts" },
      h("dt", {}, "Request"),
      h("dd", {}, h("code", { class: "call-line" }, `${entry.method} ${entry.url}`)),
      h("dt", {}, "Status"),
      h("dd", { class: "call-status" }, status),
    ),
    h("h4", {}, "Headers"),
    code("", headers || "(none)"),
    entry.body !== undefined ? [h("h4", {}, "Body"), code("", pretty(entry.body))] : null,
    h("h4", {}, "Answer"),
    code("call-answer", `${answerHeaders}${pretty(entry.answer) || "(empty)"}`),
    h("div", { class: "call-head" }, h("h4", {}, "The same call with curl"), copyButton),
    code("call-curl", curl),
    h("p", { class: "muted small" }, "Set TOKEN to your bearer token first (`make token` prints one for the local stack)."),
  );
}

function render() {
  const [last, ...earlier] = calls.items;
  const body = $("#calls-body");
  if (!last) {
    body.replaceChildren(h("p", { class: "muted" }, "Nothing called yet: do something on the page."));
    return;
  }
  body.replaceChildren(
    entryView(last),
    earlier.length
      ? h(
          "section",
          { class: "calls-earlier", "aria-label": "Earlier calls" },
          h("h3", {}, "Earlier calls"),
          ...earlier.map((entry) =>
            h(
              "details",
              {},
              h("summary", {}, `${entry.method} ${path(entry.url)} → ${entry.status ?? "…"}`),
              entryView(entry),
            ),
          ),
        )
      : null,
  );
}

export function initCalls() {
  const dialog = $("#calls-dialog");
  $("#open-calls").addEventListener("click", () => {
    render();
    dialog.showModal();
  });
  $("#calls-close").addEventListener("click", () => dialog.close());
  calls.addEventListener("change", () => {
    if (dialog.open) render();
  });
}
