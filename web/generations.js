// Avatars from a ready model: styles and counts in, a gallery that fills in as each
// generation succeeds.

import { $, announce, badge, h, plural, setError, show, toast, when } from "./dom.js";
import { etaText, jobSeen } from "./durations.js";
import { renderAvatars } from "./gallery.js";
import { FINISHED, jobActions } from "./jobs.js";
import { poll } from "./poll.js";
import { intents, reportError, session } from "./state.js";

const DEFAULT_COUNT = 4;

const view = {
  model: null,
  styles: null,
  max: 40,
  loadingStyles: null,
  generations: new Map(),
  elements: new Map(),
  order: [],
  watchers: new Map(),
  /** What the page last said about a generation's cancel or delete (a 409's words). */
  notes: new Map(),
  listedFor: null,
};

export function initGenerations() {
  $("#generate-form").addEventListener("submit", generate);
  $("#style-grid").addEventListener("input", renderTotal);
  $("#style-grid").addEventListener("change", (event) => {
    if (event.target.type === "checkbox") {
      const count = event.target.closest(".style-option").querySelector('input[type="number"]');
      count.disabled = !event.target.checked;
    }
    renderTotal();
  });
}

export function resetGenerations() {
  stopWatchers();
  view.model = null;
  view.styles = null;
  view.loadingStyles = null;
  view.listedFor = null;
  view.generations.clear();
  view.elements.clear();
  view.notes.clear();
  view.order = [];
  $("#style-grid").replaceChildren();
  $("#generations").replaceChildren();
}

function stopWatchers() {
  for (const watcher of view.watchers.values()) watcher.stop();
  view.watchers.clear();
}

/** Called whenever the selected model (or its state) changes; `null` when none is. */
export function showGenerations(model) {
  const changed = model?.model_id !== view.model?.model_id;
  view.model = model;
  if (changed) {
    stopWatchers();
    view.generations.clear();
    view.elements.clear();
    view.notes.clear();
    view.order = [];
    view.listedFor = null;
    $("#generations").replaceChildren();
    setError($("#generate-error"), "");
  }
  if (!model) return;
  const ready = model.status === "ready";
  const usable = ready || session.skipChecks;
  $("#step-avatars").dataset.state = ready ? "ready" : "locked";
  $("#avatars-hint").textContent = ready
    ? "Pick styles and how many of each; the gallery fills in as they are made."
    : model.status === "failed"
      ? "The model failed to train, so it cannot make avatars."
      : "Available once the model is ready.";
  $("#style-picker").disabled = !usable;
  $("#generation-prompt").disabled = !usable;
  $("#generate").disabled = !usable;
  loadStyles();
  if (ready && view.listedFor !== model.model_id) {
    view.listedFor = model.model_id;
    loadGenerations(model.model_id);
  }
}

async function loadStyles() {
  if (view.styles || view.loadingStyles) return;
  const status = $("#styles-status");
  status.textContent = "Loading styles…";
  view.loadingStyles = session.api
    .styles()
    .then((answer) => {
      view.styles = answer.styles;
      view.max = answer.max_avatars_per_generation ?? view.max;
      status.textContent = "";
      renderStyles();
    })
    .catch((error) => {
      status.textContent = `Styles are unavailable: ${error.message}`;
      reportError("Could not load the styles", error);
    })
    .finally(() => {
      view.loadingStyles = null;
    });
}

const styleLabel = (style) => style.charAt(0).toUpperCase() + style.slice(1).replaceAll("_", " ");

function renderStyles() {
  $("#style-grid").replaceChildren(
    ...view.styles.map((style) => {
      const id = `style-${style.replace(/[^A-Za-z0-9_-]/g, "-")}`;
      return h(
        "div",
        { class: "style-option", dataset: { style } },
        h("input", { type: "checkbox", id, value: style }),
        h("label", { for: id }, styleLabel(style)),
        h("input", {
          type: "number",
          class: "count",
          min: "1",
          max: String(view.max),
          step: "1",
          value: String(DEFAULT_COUNT),
          inputmode: "numeric",
          disabled: true,
          "aria-label": `How many ${styleLabel(style)} avatars`,
        }),
      );
    }),
  );
  renderTotal();
}

function chosenRequests() {
  return [...document.querySelectorAll("#style-grid .style-option")]
    .filter((option) => option.querySelector('input[type="checkbox"]').checked)
    .map((option) => ({
      style: option.dataset.style,
      raw: option.querySelector('input[type="number"]').value.trim(),
    }));
}

function renderTotal() {
  const chosen = chosenRequests();
  const total = chosen.reduce((sum, choice) => sum + (Number(choice.raw) || 0), 0);
  const line = $("#generation-total");
  line.textContent = chosen.length
    ? `${plural(total, "avatar")} in ${plural(chosen.length, "style")} (at most ${view.max})`
    : "No style chosen yet.";
  line.classList.toggle("over", total > view.max);
}

async function generate(event) {
  event.preventDefault();
  const model = view.model;
  const error = $("#generate-error");
  setError(error, "");
  if (!model) return;
  const prompt = $("#generation-prompt").value.trim();
  const chosen = chosenRequests();
  const requests = chosen.map(({ style, raw }) => {
    const count = Number(raw);
    const request = { style, count: raw !== "" && Number.isFinite(count) ? count : raw };
    if (prompt) request.prompt = prompt;
    return request;
  });
  if (!session.skipChecks) {
    const problem = checkRequests(chosen);
    if (problem) {
      setError(error, problem);
      announce(problem);
      return;
    }
  }
  const button = $("#generate");
  button.disabled = true;
  const key = intents.generation.keyFor({ model_id: model.model_id, requests });
  try {
    const generation = await session.api.createGeneration(model.model_id, requests, key);
    intents.generation.done();
    remember(generation, { first: true });
    announce(`Generation started: ${describe(generation)}.`);
  } catch (failure) {
    if (!failure.transient) intents.generation.done();
    reportError("Could not start the generation", failure, error);
  } finally {
    button.disabled = false;
  }
}

function checkRequests(chosen) {
  if (!chosen.length) return "Choose at least one style.";
  let total = 0;
  for (const { style, raw } of chosen) {
    const count = Number(raw);
    if (raw === "" || !Number.isInteger(count) || count < 1) {
      return `How many ${styleLabel(style)} avatars: a whole number from 1 to ${view.max}.`;
    }
    total += count;
  }
  if (total > view.max) {
    return `At most ${view.max} avatars per generation: you asked for ${total}.`;
  }
  return "";
}

async function loadGenerations(modelId) {
  try {
    const page = await session.api.listGenerations(modelId);
    if (view.model?.model_id !== modelId) return;
    for (const generation of [...page.items].reverse()) remember(generation, { first: true });
  } catch (error) {
    reportError("Could not list the generations", error, $("#generate-error"));
  }
}

/**
 * Keeps the latest answer for a generation and redraws its block when something a person
 * can see changed; `fresh` redraws anyway (new presigned URLs after an expiry).
 */
function remember(generation, { first = false, fresh = false } = {}) {
  const id = generation.generation_id;
  jobSeen("generation", generation);
  if (FINISHED.has(generation.status)) view.notes.delete(id); // a cancel's answer is moot now
  if (!view.generations.has(id)) view.order.unshift(id);
  view.generations.set(id, generation);
  const old = view.elements.get(id);
  if (fresh || !old || old.dataset.look !== look(generation)) view.elements.set(id, block(id));
  render();
  if (first && !FINISHED.has(generation.status)) watch(id);
}

/** What the block shows; polls answer new presigned URLs each time, which it ignores. */
function look(generation) {
  const avatars = generation.avatars.map((avatar) => avatar.avatar_id).join(",");
  const note = view.notes.get(generation.generation_id) ?? "";
  return `${generation.status}|${avatars}|${generation.error ?? ""}|${note}`;
}

/** A generation was deleted: it leaves the page. */
function forget(id) {
  view.watchers.get(id)?.stop();
  view.watchers.delete(id);
  view.generations.delete(id);
  view.elements.delete(id);
  view.notes.delete(id);
  view.order = view.order.filter((other) => other !== id);
  render();
}

function setNote(id, text) {
  if (text) view.notes.set(id, text);
  else view.notes.delete(id);
  if (view.generations.has(id)) remember(view.generations.get(id), { fresh: true });
}

function watch(id) {
  if (view.watchers.get(id)?.running) return;
  const modelId = view.model?.model_id;
  let last = view.generations.get(id)?.status;
  view.watchers.set(
    id,
    poll(() => session.api.getGeneration(id), {
      interval: 1500,
      isDone: (generation) => FINISHED.has(generation.status),
      onValue: (generation) => {
        if (view.model?.model_id !== modelId) return;
        remember(generation);
        if (generation.status !== last) {
          last = generation.status;
          if (generation.status === "succeeded") {
            toast("success", "Avatars ready", describe(generation));
            announce(`${plural(generation.avatars.length, "avatar")} ready.`);
          } else if (generation.status === "failed") {
            announce(`Generation failed: ${generation.error ?? "no reason given"}.`);
          }
        }
      },
      onError: (error, failures, retrying) => {
        if (!retrying) reportError("Stopped watching a generation", error);
      },
    }),
  );
}

/** Presigned URLs expire: fetch the generation again for fresh ones. */
async function refreshGeneration(id) {
  try {
    remember(await session.api.getGeneration(id), { fresh: true });
  } catch (error) {
    reportError("Could not refresh the avatars", error);
  }
}

function describe(generation) {
  return (generation.requests ?? [])
    .map((request) => `${styleLabel(request.style)} ×${request.count}`)
    .join(" · ");
}

function render() {
  const host = $("#generations");
  host.replaceChildren(...view.order.map((id) => view.elements.get(id)));
  show(host, view.order.length > 0);
}

function block(id) {
  const generation = view.generations.get(id);
  const wanted = (generation.requests ?? []).reduce((sum, r) => sum + (r.count || 0), 0);
  const waiting = FINISHED.has(generation.status)
    ? 0
    : Math.max(0, wanted - generation.avatars.length);
  const grid = h("ul", { class: "avatar-grid", "aria-label": `Avatars: ${describe(generation)}` });
  renderAvatars(grid, generation.avatars, {
    label: "Avatar",
    details: (avatar) => {
      const request = (generation.requests ?? []).find((r) => r.style === avatar.style);
      return [styleLabel(avatar.style ?? ""), request?.prompt ? `“${request.prompt}”` : null]
        .filter(Boolean)
        .join(" · ");
    },
    placeholders: Math.min(waiting, 12),
    refresh: () => refreshGeneration(id),
  });
  return h(
    "article",
    {
      class: "generation",
      dataset: { generationId: id, status: generation.status, look: look(generation) },
    },
    h(
      "header",
      { class: "generation-head" },
      h("strong", {}, describe(generation) || "Generation"),
      badge(generation.status),
      h("span", { class: "muted small" }, when(generation.created_at)),
      FINISHED.has(generation.status)
        ? null
        : h("span", { class: "eta small" }, etaText("generation", generation)),
      jobActions(generation, {
        noun: "generation",
        avatars: generation.avatars.length,
        cancel: () => session.api.cancelGeneration(id),
        remove: () => session.api.deleteGeneration(id),
        onCancelled: (cancelled) => remember(cancelled),
        onDeleted: () => forget(id),
        onNote: (text) => setNote(id, text),
      }),
    ),
    generation.status === "failed"
      ? h("p", { class: "form-error" }, generation.error || "The generation failed.")
      : null,
    generation.status === "cancelled"
      ? h("p", { class: "muted small job-note" }, "Cancelled before it reached the provider: nothing was charged.")
      : null,
    view.notes.get(id) ? h("p", { class: "note small job-note", role: "status" }, view.notes.get(id)) : null,
    grid,
  );
}
