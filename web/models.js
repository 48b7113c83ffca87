// Custom models: the list, one model's page, its selfies (uploaded straight to S3 through
// presigned POSTs) and its training, watched live.

import { contentTypeOf, uploadToPresignedPost } from "./api.js";
import { $, announce, badge, h, megabytes, plural, setError, show, toast, when } from "./dom.js";
import { etaText, expectedText, trainingSeen } from "./durations.js";
import { initGenerations, resetGenerations, showGenerations } from "./generations.js";
import { poll } from "./poll.js";
import { intents, reportError, session } from "./state.js";

// Until GET /v1/selfie-rules answers (it says what the stack is configured with).
let MAX_SELFIES = 30;
let MIN_SELFIES = 5;
let MAX_UPLOAD_BYTES = 15 * 1024 * 1024;
const PARALLEL_UPLOADS = 3;
const SELFIE_WATCH_MS = 120_000;
const SUBJECTS = { man: "Man", woman: "Woman", couple: "Couple", dog: "Dog", cat: "Cat" };

const view = {
  models: new Map(),
  order: [],
  cursor: null,
  selectedId: null,
  selfies: [],
  /** Per model: selfie key -> what only this browser knows (file name, thumbnail, upload). */
  local: new Map(),
  tiles: new Map(),
  watchModel: null,
  watchSelfies: null,
  localCount: 0,
  /** Bumped by every list request and every local change, so an old list answer (asked for
   * before a model was created here) merges into the list instead of replacing it. */
  changes: 0,
  deleted: new Set(),
  rules: null,
};

const current = () => view.models.get(view.selectedId) ?? null;

export function initModels() {
  $("#create-model-form").addEventListener("submit", createModel);
  $("#refresh-models").addEventListener("click", () => loadModels(true));
  $("#more-models").addEventListener("click", () => loadModels(false));
  $("#delete-model").addEventListener("click", deleteModel);
  $("#start-training").addEventListener("click", startTraining);
  $("#cancel-training").addEventListener("click", cancelTraining);
  const input = $("#selfie-input");
  $("#pick-selfies").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    addSelfies([...input.files]);
    input.value = "";
  });
  const zone = $("#selfie-drop");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    addSelfies([...(event.dataTransfer?.files ?? [])]);
  });
  initGenerations();
}

export function resetModels() {
  stopWatching();
  view.models.clear();
  view.order = [];
  view.cursor = null;
  view.selectedId = null;
  view.deleted.clear();
  for (const files of view.local.values()) {
    for (const entry of files.values()) if (entry.thumb) URL.revokeObjectURL(entry.thumb);
  }
  view.local.clear();
  $("#model-list").replaceChildren();
  resetGenerations();
  renderDetail();
}

function stopWatching() {
  view.watchModel?.stop();
  view.watchSelfies?.stop();
  view.watchModel = view.watchSelfies = null;
}

// -- the list -----------------------------------------------------------------------------

export async function loadModels(reset) {
  const api = session.api;
  if (!api) return;
  const asked = ++view.changes;
  try {
    const page = await api.listModels(reset ? null : view.cursor);
    if (api !== session.api) return; // signed out or switched user meanwhile
    if (reset && asked === view.changes) {
      view.order = [];
      view.models.clear();
    }
    for (const model of page.items) {
      if (view.deleted.has(model.model_id)) continue;
      if (!view.models.has(model.model_id)) view.order.push(model.model_id);
      view.models.set(model.model_id, model);
    }
    view.cursor = page.next_cursor;
    renderList();
    if (view.selectedId && !view.models.has(view.selectedId)) select(null);
    else if (
      !view.selectedId &&
      view.order.length &&
      window.matchMedia("(min-width: 900px)").matches
    ) {
      select(view.order[0]);
    } else renderDetail();
  } catch (error) {
    reportError("Could not list your models", error);
  }
}

function renderList() {
  const list = $("#model-list");
  list.replaceChildren(
    ...view.order.map((id) => {
      const model = view.models.get(id);
      const selected = id === view.selectedId;
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "item",
            "aria-current": selected ? "true" : "false",
            dataset: { modelId: id },
            onclick: () => select(id, true),
          },
          h(
            "span",
            { class: `item-icon subject-${model.subject}`, "aria-hidden": "true" },
            SUBJECTS[model.subject]?.[0] ?? "?",
          ),
          h(
            "span",
            { class: "item-text" },
            h("span", { class: "item-title" }, modelName(model)),
            h(
              "span",
              { class: "item-sub" },
              `${SUBJECTS[model.subject] ?? model.subject} · ${when(model.created_at)}`,
            ),
          ),
          badge(model.status),
        ),
      );
    }),
  );
  show($("#models-empty"), view.order.length === 0);
  show($("#more-models"), Boolean(view.cursor));
}

function modelName(model) {
  return model.name || `Untitled ${(SUBJECTS[model.subject] ?? model.subject).toLowerCase()}`;
}

function upsert(model) {
  if (!view.models.has(model.model_id)) {
    view.order.unshift(model.model_id);
    view.changes += 1;
  }
  view.models.set(model.model_id, model);
  renderList();
  if (model.model_id === view.selectedId) renderDetail();
}

async function createModel(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const subject = form.elements.subject.value;
  const name = form.elements.name.value.trim();
  const error = $("#create-model-error");
  setError(error, "");
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const model = await session.api.createModel(subject, name || null);
    upsert(model);
    form.elements.name.value = "";
    select(model.model_id, true);
    announce(`Model ${modelName(model)} created. Add selfies next.`);
  } catch (failure) {
    reportError("Could not create the model", failure, error);
  } finally {
    button.disabled = false;
  }
}

function select(id, focus = false) {
  if (id === view.selectedId) return;
  stopWatching();
  view.selectedId = id;
  view.selfies = [];
  view.tiles.clear();
  $("#selfie-grid").replaceChildren();
  setError($("#selfies-error"), "");
  setError($("#training-error"), "");
  renderList();
  renderDetail();
  if (!id) return;
  loadSelfieRules();
  refreshModel();
  refreshSelfies();
  if (focus) {
    $("#model-view").scrollIntoView({ behavior: "smooth", block: "start" });
    $("#model-title").focus({ preventScroll: true });
  }
}

async function refreshModel() {
  const id = view.selectedId;
  if (!id) return;
  try {
    const model = await session.api.getModel(id);
    if (id !== view.selectedId) return;
    upsert(model);
    if (model.status === "training") watchTraining();
  } catch (error) {
    if (error.status === 404) {
      forget(id);
      toast("error", "That model is gone", error.message);
    } else reportError("Could not load the model", error);
  }
}

function forget(id) {
  view.changes += 1;
  view.models.delete(id);
  view.order = view.order.filter((other) => other !== id);
  if (view.selectedId === id) select(null);
  renderList();
}

async function deleteModel() {
  const model = current();
  if (!model) return;
  const confirmed = await confirmDialog(
    `Delete “${modelName(model)}”?`,
    "Its selfies, avatars and records are deleted for good. This cannot be undone.",
  );
  if (!confirmed) return;
  const button = $("#delete-model");
  button.disabled = true;
  try {
    await session.api.deleteModel(model.model_id);
    view.deleted.add(model.model_id);
    forget(model.model_id);
    toast("success", "Model deleted", modelName(model));
    announce(`Model ${modelName(model)} deleted.`);
  } catch (error) {
    reportError("Could not delete the model", error);
  } finally {
    button.disabled = false;
  }
}

/** Resolves true when the user confirms in the confirm dialog. */
export function confirmDialog(title, text, action = "Delete") {
  const dialog = $("#confirm-dialog");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), {
      once: true,
    });
  });
}

// -- one model ------------------------------------------------------------------------------

function renderDetail() {
  const model = current();
  show($("#model-empty"), !model);
  show($("#model-view"), Boolean(model));
  if (!model) {
    showGenerations(null);
    return;
  }
  const title = $("#model-title");
  title.textContent = modelName(model);
  title.tabIndex = -1;
  const subject = SUBJECTS[model.subject] ?? model.subject;
  $("#model-meta").textContent =
    `${subject} · created ${when(model.created_at)} · ${model.model_id}`;
  badge(model.status, $("#model-status"));

  const counts = model.selfies;
  const room = MAX_SELFIES - counts.pending - counts.accepted;
  $("#selfie-counts").replaceChildren(
    h("strong", {}, `${counts.accepted}`),
    ` accepted · ${counts.rejected} rejected`,
    counts.pending ? ` · ${counts.pending} checking` : "",
  );
  const collecting = model.status === "collecting";
  show($("#selfie-drop"), collecting && room > 0);
  setError(
    $("#selfies-full"),
    collecting && room <= 0 ? `This model holds the most selfies it can (${MAX_SELFIES}).` : "",
  );
  const deleted = $("#selfies-deleted");
  show(deleted, Boolean(model.selfies_deleted_at));
  if (model.selfies_deleted_at) {
    deleted.textContent =
      `The selfies were deleted on ${when(model.selfies_deleted_at)}: they are biometric ` +
      "data and no longer needed once the model is trained.";
  }
  renderTraining(model);
  renderSelfies();
  showGenerations(model);
}

function renderTraining(model) {
  const button = $("#start-training");
  const hint = $("#training-hint");
  const line = $("#training-status");
  const progress = $("#training-progress");
  const accepted = model.selfies.accepted;
  $("#step-training").dataset.state = model.status;
  trainingSeen(model);
  const retrainable =
    (model.status === "failed" || model.status === "cancelled") &&
    model.retry_until &&
    Date.parse(model.retry_until) > Date.now();
  show(button, model.status === "collecting" || retrainable);
  show($("#cancel-training"), model.status === "training");
  if (model.status !== "training") setError($("#training-note"), "");
  button.textContent = retrainable ? "Train again" : "Start training";
  show(progress, model.status === "training" || model.status === "ready");
  if (model.status === "collecting") {
    const missing = Math.max(0, MIN_SELFIES - accepted);
    const pending = model.selfies.pending;
    hint.textContent = missing
      ? `Needs at least ${MIN_SELFIES} accepted selfies: ${missing} more to go.`
      : pending
        ? `Waiting for ${plural(pending, "selfie")} still being checked.`
        : `${plural(accepted, "accepted selfie")}: ready to train (${expectedText("training")}).`;
    button.disabled = (missing > 0 || model.selfies.pending > 0) && !session.skipChecks;
    line.textContent = "";
  } else if (model.status === "training") {
    const pct = Math.round(model.training_progress ?? 0);
    hint.textContent = "The provider is learning the subject. You can leave this page.";
    setProgress(pct);
    line.textContent = `Training… ${pct}% · ${etaText("training", model)}`;
  } else if (model.status === "ready") {
    hint.textContent = `Trained from ${plural(accepted, "selfie")}.`;
    setProgress(100);
    line.textContent = `Ready since ${when(model.updated_at)}.`;
  } else if (model.status === "failed") {
    const cost = model.provider_accepted
      ? "The provider had accepted the training, so it may have been billed."
      : "The provider never started it: nothing was charged.";
    hint.textContent = retrainable
      ? `Training failed. ${cost} Your selfies are kept until ${when(model.retry_until)}: ` +
        "train again with them until then."
      : `Training failed. ${cost} Its selfies are no longer kept: create a new model to try again.`;
    button.disabled = false;
    line.textContent = "";
  } else if (model.status === "cancelled") {
    const cost = "It was cancelled before the provider had it: nothing was charged.";
    hint.textContent = retrainable
      ? `Training cancelled. ${cost} Your selfies are kept until ${when(model.retry_until)}: ` +
        "train again with them until then."
      : `Training cancelled. ${cost} Its selfies are no longer kept: create a new model to try again.`;
    button.disabled = false;
    line.textContent = "";
  }
  if (model.status === "failed") setError($("#training-error"), model.error || "Training failed.");
}

function setProgress(pct) {
  $("#training-bar").style.width = `${pct}%`;
  $("#training-pct").textContent = `${pct}%`;
  const track = $("#training-progress .progress-track");
  track.setAttribute("role", "progressbar");
  track.setAttribute("aria-label", "Training progress");
  track.setAttribute("aria-valuemin", "0");
  track.setAttribute("aria-valuemax", "100");
  track.setAttribute("aria-valuenow", String(pct));
}

async function startTraining() {
  const model = current();
  if (!model) return;
  const button = $("#start-training");
  const error = $("#training-error");
  setError(error, "");
  button.disabled = true;
  const key = intents.training.keyFor({ model_id: model.model_id });
  try {
    const updated = await session.api.startTraining(model.model_id, key);
    intents.training.done();
    upsert(updated);
    announce("Training started.");
    watchTraining();
  } catch (failure) {
    if (!failure.transient) intents.training.done();
    reportError("Could not start training", failure, error);
    renderTraining(current());
  }
}

/** Cancels a training the provider has not been handed yet, at no cost; once it has, the
 * API answers 409 that the training is paid for and kept, and the page says so. */
async function cancelTraining() {
  const model = current();
  if (!model) return;
  const button = $("#cancel-training");
  const note = $("#training-note");
  button.disabled = true;
  try {
    const updated = await session.api.cancelTraining(model.model_id);
    view.watchModel?.stop();
    setError(note, "");
    upsert(updated);
    toast("success", "Training cancelled", "It never reached the provider: nothing was charged.");
    announce("Training cancelled; nothing was charged.");
  } catch (error) {
    if (error.status === 409) {
      setError(note, error.message);
      announce(error.message);
    } else reportError("Could not cancel the training", error, $("#training-error"));
  } finally {
    button.disabled = false;
  }
}

function watchTraining() {
  const id = view.selectedId;
  if (view.watchModel?.running) return;
  let last = current()?.status;
  view.watchModel = poll(() => session.api.getModel(id), {
    interval: 1500,
    isDone: (model) => model.status !== "training",
    onValue: (model) => {
      if (id !== view.selectedId) return;
      setError($("#training-error"), "");
      upsert(model);
      if (model.status !== last) {
        last = model.status;
        if (model.status === "ready") {
          toast("success", "Model ready", `${modelName(model)} can make avatars now.`);
          announce("Training finished: the model is ready.");
        } else if (model.status === "failed") {
          announce(`Training failed: ${model.error ?? "no reason given"}.`);
        }
      }
    },
    onError: (error, failures, retrying) => {
      if (id !== view.selectedId) return;
      const message = retrying
        ? `Lost touch with the API (${error.message}); retrying (attempt ${failures + 1})…`
        : error.message;
      setError($("#training-error"), message);
      if (!retrying) reportError("Stopped watching the training", error);
    },
  });
}

// -- selfies --------------------------------------------------------------------------------

/** Shown near the upload, once per session: what a selfie must be, and what is refused. */
async function loadSelfieRules() {
  if (view.rules) return;
  view.rules = session.api.selfieRules();
  let rules;
  try {
    rules = await view.rules;
  } catch (error) {
    view.rules = null;
    reportError("Could not load the selfie rules", error);
    return;
  }
  MAX_SELFIES = rules.max_selfies_per_model;
  MIN_SELFIES = rules.min_selfies_for_training;
  MAX_UPLOAD_BYTES = rules.max_bytes;
  const formats = rules.content_types.map((type) => type.replace("image/", "").toUpperCase());
  $("#selfie-rules-list").replaceChildren(
    h(
      "li",
      {},
      `${[...new Set(formats)].join(", ")}; up to ${megabytes(rules.max_bytes)}, ` +
        `at least ${rules.min_side} px on the short side.`,
    ),
    h("li", {}, `${MIN_SELFIES}–${MAX_SELFIES} selfies per model.`),
    ...rules.checks.map((check) => h("li", {}, `${check.rule}.`)),
  );
  show($("#selfie-rules"), true);
  renderDetail();
}

function localFor(modelId) {
  if (!view.local.has(modelId)) view.local.set(modelId, new Map());
  return view.local.get(modelId);
}


async function addSelfies(files) {
  const model = current();
  if (!model || !files.length) return;
  const error = $("#selfies-error");
  setError(error, "");
  const local = localFor(model.model_id);
  const check = !session.skipChecks;
  let room = MAX_SELFIES - model.selfies.pending - model.selfies.accepted;
  const chosen = [];
  let overflow = 0;
  for (const file of files) {
    const type = contentTypeOf(file);
    let problem = "";
    if (check && !type) problem = `${file.name}: only JPEG, PNG, HEIC or WebP photos can be used.`;
    else if (check && file.size > MAX_UPLOAD_BYTES) {
      const limit = megabytes(MAX_UPLOAD_BYTES);
      problem = `${file.name} is ${megabytes(file.size)}; the limit is ${limit}.`;
    } else if (check && room <= 0) {
      overflow += 1;
      continue;
    }
    if (problem) {
      view.localCount += 1;
      local.set(`local-${view.localCount}`, {
        seq: view.localCount,
        name: file.name,
        state: "error",
        message: problem,
      });
      continue;
    }
    room -= 1;
    chosen.push({ file, type: type ?? (file.type || "application/octet-stream") });
  }
  if (overflow) {
    setError(
      error,
      `A model holds at most ${MAX_SELFIES} selfies: ${plural(overflow, "photo")} did not fit.`,
    );
  }
  renderSelfies();
  if (!chosen.length) return;

  let uploads;
  try {
    const answer = await session.api.requestSelfieUploads(
      model.model_id,
      chosen.map((choice) => choice.type),
    );
    uploads = answer.uploads;
  } catch (failure) {
    reportError("Could not add the selfies", failure, error);
    return;
  }
  uploads.forEach((slot, index) => {
    const { file } = chosen[index];
    local.set(slot.selfie_id, {
      seq: ++view.localCount,
      name: file.name,
      thumb: URL.createObjectURL(file),
      state: "uploading",
      progress: 0,
    });
  });
  announce(`Uploading ${plural(uploads.length, "selfie")}.`);
  refreshSelfies();
  const jobs = uploads.map(
    (slot, index) => () => uploadSelfie(model.model_id, slot, chosen[index].file),
  );
  await runLimited(jobs, PARALLEL_UPLOADS);
  const failed = [...local.values()].filter((entry) => entry.state === "error").length;
  announce(
    failed
      ? `Uploads finished; ${plural(failed, "upload")} failed.`
      : "Uploads finished; checking the photos.",
  );
  watchSelfies();
}

async function uploadSelfie(modelId, slot, file) {
  const entry = localFor(modelId).get(slot.selfie_id);
  try {
    await uploadToPresignedPost(slot, file, (fraction) => {
      entry.progress = fraction;
      if (modelId === view.selectedId) updateTile(slot.selfie_id);
    });
    entry.state = "uploaded";
  } catch (failure) {
    entry.state = "error";
    entry.message = failure.message;
    toast("error", `${file.name} was not uploaded`, failure.message);
  }
  if (modelId === view.selectedId) updateTile(slot.selfie_id);
}

async function runLimited(jobs, limit) {
  const queue = [...jobs];
  const workers = Array.from({ length: Math.min(limit, queue.length) }, async () => {
    while (queue.length) await queue.shift()();
  });
  await Promise.all(workers);
}

async function refreshSelfies() {
  const id = view.selectedId;
  if (!id) return;
  try {
    const answer = await session.api.listSelfies(id);
    if (id !== view.selectedId) return;
    view.selfies = answer.items;
    renderSelfies();
    if (answer.items.some((selfie) => selfie.status === "pending")) watchSelfies();
  } catch (error) {
    reportError("Could not list the selfies", error, $("#selfies-error"));
  }
}

/** Polls the selfies until every uploaded one is accepted or rejected (bounded). */
function watchSelfies() {
  const id = view.selectedId;
  if (!id || view.watchSelfies?.running) return;
  const local = localFor(id);
  const deadline = Date.now() + SELFIE_WATCH_MS;
  const before = new Map(view.selfies.map((selfie) => [selfie.selfie_id, selfie.status]));
  view.watchSelfies = poll(() => session.api.listSelfies(id), {
    interval: 1000,
    isDone: (answer) => {
      const waiting = answer.items.filter(
        (selfie) => selfie.status === "pending" && local.get(selfie.selfie_id)?.state !== "error",
      );
      if (waiting.length && Date.now() > deadline) {
        setError(
          $("#selfies-error"),
          `Still checking ${plural(waiting.length, "selfie")}. An upload that never arrives is ` +
            "rejected once its link expires; refresh in a few minutes.",
        );
        return true;
      }
      return waiting.length === 0;
    },
    onValue: (answer) => {
      if (id !== view.selectedId) return;
      view.selfies = answer.items;
      for (const selfie of answer.items) {
        const was = before.get(selfie.selfie_id);
        if (selfie.status !== "pending" && was !== selfie.status) {
          before.set(selfie.selfie_id, selfie.status);
          const name = local.get(selfie.selfie_id)?.name ?? "A selfie";
          announce(
            selfie.status === "rejected"
              ? `${name} rejected: ${selfie.reason}`
              : `${name} accepted.`,
          );
        }
      }
      renderSelfies();
      refreshModelQuietly(id);
    },
    onError: (error, failures, retrying) => {
      if (!retrying) reportError("Stopped checking the selfies", error, $("#selfies-error"));
    },
  });
}

let refreshing = null;
function refreshModelQuietly(id) {
  if (refreshing) return;
  refreshing = session.api
    .getModel(id)
    .then((model) => id === view.selectedId && upsert(model))
    .catch(() => {})
    .finally(() => {
      refreshing = null;
    });
}

function selfieKeys() {
  const local = view.selectedId ? localFor(view.selectedId) : new Map();
  // Once the photos are deleted, a tile this browser has no thumbnail for says nothing new.
  const deleted = Boolean(current()?.selfies_deleted_at);
  const keys = view.selfies
    .map((selfie) => selfie.selfie_id)
    .filter((key) => !deleted || local.get(key)?.thumb);
  for (const key of local.keys()) if (!keys.includes(key)) keys.push(key);
  // Earlier selfies first, then this page's uploads in the order they were chosen.
  return keys.sort((a, b) => (local.get(a)?.seq ?? 0) - (local.get(b)?.seq ?? 0));
}

function renderSelfies() {
  const grid = $("#selfie-grid");
  const keys = selfieKeys();
  const tiles = keys.map((key) => {
    let tile = view.tiles.get(key);
    if (!tile) {
      tile = makeTile(key);
      view.tiles.set(key, tile);
    }
    return tile;
  });
  grid.replaceChildren(...tiles);
  for (const key of keys) updateTile(key);
}

function makeTile(key) {
  const entry = localFor(view.selectedId).get(key);
  const placeholder = () => h("span", { class: "selfie-thumb placeholder", "aria-hidden": "true" });
  const thumb = entry?.thumb
    ? h("img", {
        src: entry.thumb,
        alt: "",
        class: "selfie-thumb",
        // Not an image the browser can show (a text file named .jpg, say): draw no broken icon.
        onerror: (event) => event.currentTarget.replaceWith(placeholder()),
      })
    : placeholder();
  return h(
    "li",
    { class: "selfie", dataset: { selfieId: key } },
    h(
      "div",
      { class: "selfie-frame" },
      thumb,
      h("span", { class: "badge" }),
      h("div", { class: "selfie-progress" }, h("div")),
    ),
    h("p", { class: "selfie-name" }),
    h("p", { class: "selfie-reason" }),
  );
}

function updateTile(key) {
  const tile = view.tiles.get(key);
  if (!tile) return;
  const entry = localFor(view.selectedId).get(key);
  const selfie = view.selfies.find((item) => item.selfie_id === key);
  let status = selfie?.status ?? "pending";
  let reason = selfie?.reason ?? "";
  if (entry?.state === "uploading") status = "uploading";
  if (entry?.state === "error") {
    status = "error";
    reason = entry.message;
  }
  tile.className = `selfie status-${status}`;
  const name = entry?.name ?? `Selfie ${key.slice(-6)}`;
  tile.querySelector(".selfie-name").textContent = name;
  tile.querySelector(".selfie-name").title = name;
  badge(status, tile.querySelector(".badge"));
  const reasonLine = tile.querySelector(".selfie-reason");
  reasonLine.textContent = reason;
  reasonLine.hidden = !reason;
  const bar = tile.querySelector(".selfie-progress");
  bar.hidden = status !== "uploading";
  bar.firstElementChild.style.width = `${Math.round((entry?.progress ?? 0) * 100)}%`;
}
