// Face avatars: one reference photo (uploaded through a presigned POST and checked by the
// backend), the seed's parameters as form controls, and the job's batch as a grid.

import { contentTypeOf, uploadToPresignedPost } from "./api.js";
import { $, announce, badge, h, megabytes, plural, setError, show, toast, when } from "./dom.js";
import { etaText, jobSeen } from "./durations.js";
import { renderAvatars } from "./gallery.js";
import { FINISHED, jobActions } from "./jobs.js";
import { poll } from "./poll.js";
import { intents, reportError, session } from "./state.js";
import { FACE_NUMBERS, faceRequest } from "./validate.js";

const MAX_UPLOAD_BYTES = 15 * 1024 * 1024;
/** After a job ends its reference may be deleted (ReferenceRetentionSeconds 0): look this
 * many times, a second and a half apart, before trusting that it is kept. */
const REFERENCE_LOOKS = 6;
/** What the page says of a reference the server deleted once its jobs had finished. */
export const REFERENCE_GONE =
  "Your reference photo was deleted once its last job finished (we keep no face longer " +
  "than its jobs need): choose the photo again to make more.";

/** Form control and error line of each request field the form can show a problem for. */
const FIELDS = {
  batch: ["#face-batch", "#face-batch-error"],
  width: ["#face-width", "#face-width-error"],
  height: ["#face-height", "#face-height-error"],
  num_inference_steps: ["#face-steps", "#face-steps-error"],
  guidance_scale: ["#face-guidance", "#face-guidance-error"],
  bg_color: ["#face-bg-hex", "#face-bg-color-error"],
};

const view = {
  image: null,
  watchImage: null,
  job: null,
  watchJob: null,
  watchReference: null,
  note: "",
  jobs: new Map(),
  order: [],
  cursor: null,
  listed: false,
};

export function initFaces() {
  for (const [name, spec] of Object.entries(FACE_NUMBERS)) {
    const input = $(FIELDS[name][0]);
    input.min = String(spec.min);
    input.max = String(spec.max);
    input.step = spec.integer ? "1" : "any";
    input.value = String(spec.default);
    $(`#${input.id}-hint`).textContent = `${spec.min}–${spec.max}`;
  }
  const picker = $("#reference-input");
  $("#pick-reference").addEventListener("click", () => picker.click());
  picker.addEventListener("change", () => {
    if (picker.files[0]) chooseReference(picker.files[0]);
    picker.value = "";
  });
  const reference = $("#reference");
  reference.addEventListener("dragover", (event) => {
    event.preventDefault();
    reference.classList.add("dragging");
  });
  reference.addEventListener("dragleave", () => reference.classList.remove("dragging"));
  reference.addEventListener("drop", (event) => {
    event.preventDefault();
    reference.classList.remove("dragging");
    const file = event.dataTransfer?.files?.[0];
    if (file) chooseReference(file);
  });
  const colour = $("#face-bg-color");
  const hex = $("#face-bg-hex");
  colour.addEventListener("input", () => {
    hex.value = colour.value.toUpperCase();
    clearField("bg_color");
  });
  hex.addEventListener("input", () => {
    if (/^#[0-9A-Fa-f]{6}$/.test(hex.value.trim())) colour.value = hex.value.trim().toLowerCase();
  });
  const form = $("#face-form");
  form.addEventListener("input", (event) => {
    const field = Object.keys(FIELDS).find((name) => $(FIELDS[name][0]) === event.target);
    if (field) clearField(field);
  });
  form.addEventListener("submit", submit);
  $("#refresh-jobs").addEventListener("click", () => loadJobs(true));
  $("#more-jobs").addEventListener("click", () => loadJobs(false));
}

export function resetFaces() {
  view.watchImage?.stop();
  view.watchJob?.stop();
  view.watchReference?.stop();
  if (view.image?.thumb) URL.revokeObjectURL(view.image.thumb);
  Object.assign(view, {
    image: null,
    watchImage: null,
    job: null,
    watchJob: null,
    watchReference: null,
    note: "",
    cursor: null,
    listed: false,
  });
  view.jobs.clear();
  view.order = [];
  renderReference();
  renderJob();
  renderJobs();
  setError($("#face-error"), "");
  for (const name of Object.keys(FIELDS)) clearField(name);
}

/** The reference photo's id once the backend accepted it (instant avatars use it too). */
export function acceptedReference() {
  return view.image?.status === "accepted" ? view.image.image_id : null;
}

/** The reference photo was deleted by the server (its `deleted_at`)? */
export function referenceDeleted() {
  return view.image?.status === "deleted";
}

/**
 * A job made from `imageId` ended (or a new job was refused with 409): read the upload
 * record again, a few times, since the job's workflow deletes the reference just after the
 * job ends. Resolves true once the server says it was deleted.
 */
export function recheckReference(imageId, { looks = REFERENCE_LOOKS } = {}) {
  const image = view.image;
  if (!image || !imageId || image.image_id !== imageId || image.status !== "accepted") {
    return Promise.resolve(image?.status === "deleted" && image.image_id === imageId);
  }
  view.watchReference?.stop();
  let seen = 0;
  return new Promise((resolve) => {
    view.watchReference = poll(() => session.api.getFaceUpload(imageId), {
      interval: 1500,
      isDone: (answer) => {
        seen += 1;
        const done = Boolean(answer.deleted_at) || seen >= looks;
        if (done) resolve(Boolean(answer.deleted_at));
        return done;
      },
      onValue: (answer) => {
        if (view.image !== image || !answer.deleted_at) return;
        image.status = "deleted";
        image.deletedAt = answer.deleted_at;
        renderReference();
        announce(REFERENCE_GONE);
      },
      onError: (_error, failures, retrying) => {
        if (!retrying || failures >= looks) resolve(false);
      },
    });
  });
}

/** The tab was opened: list the jobs the first time. */
export function showFaces() {
  if (!view.listed && session.api) loadJobs(true);
}

// -- the reference photo ----------------------------------------------------------------------

async function chooseReference(file) {
  const known = contentTypeOf(file);
  const type = known ?? "image/jpeg";
  view.watchImage?.stop();
  if (view.image?.thumb) URL.revokeObjectURL(view.image.thumb);
  view.image = {
    name: file.name,
    thumb: URL.createObjectURL(file),
    status: "uploading",
    progress: 0,
  };
  const image = view.image;
  if (!session.skipChecks && (!known || file.size > MAX_UPLOAD_BYTES)) {
    image.status = "error";
    image.reason = known
      ? `${file.name} is ${megabytes(file.size)}; the limit is 15 MB.`
      : `${file.name}: only a JPEG, PNG, HEIC or WebP photo can be used.`;
    renderReference();
    return;
  }
  renderReference();
  try {
    const slot = await session.api.requestFaceUpload(type);
    image.image_id = slot.image_id;
    await uploadToPresignedPost(slot, file, (fraction) => {
      image.progress = fraction;
      if (view.image === image) renderReference();
    });
    image.status = "pending";
    renderReference();
    watchImage(image);
  } catch (error) {
    image.status = "error";
    image.reason = error.message;
    if (view.image === image) renderReference();
    reportError("Could not upload the reference photo", error);
  }
}

function watchImage(image) {
  view.watchImage = poll(() => session.api.getFaceUpload(image.image_id), {
    interval: 1000,
    isDone: (answer) => answer.status !== "pending",
    onValue: (answer) => {
      if (view.image !== image) return;
      Object.assign(image, {
        status: answer.status,
        reason: answer.reason,
        width: answer.width,
        height: answer.height,
      });
      renderReference();
      if (answer.status === "accepted") announce("Reference photo accepted.");
      if (answer.status === "rejected") announce(`Reference photo rejected: ${answer.reason}`);
    },
    onError: (error, failures, retrying) => {
      if (!retrying && view.image === image) {
        image.status = "error";
        image.reason = error.message;
        renderReference();
        reportError("Could not check the reference photo", error);
      }
    },
  });
}

function renderReference() {
  const image = view.image;
  const preview = $("#reference-preview");
  preview.replaceChildren(image?.thumb ? h("img", { src: image.thumb, alt: "" }) : "");
  $("#reference").dataset.state = image?.status ?? "empty";
  $("#reference").dataset.imageId = image?.image_id ?? "";
  const status = $("#reference-status");
  const progress = $("#reference-progress");
  show(progress, image?.status === "uploading");
  $("#reference-bar").style.width = `${Math.round((image?.progress ?? 0) * 100)}%`;
  $("#pick-reference").textContent =
    image?.status === "deleted" ? "Choose the photo again" : image ? "Choose another photo" : "Choose photo";
  if (!image) {
    status.textContent = "JPEG, PNG, HEIC or WebP, one clear face.";
    return;
  }
  const size = image.width && image.height ? ` · ${image.width}×${image.height}` : "";
  status.replaceChildren(
    ...{
      uploading: [`Uploading ${image.name}…`],
      pending: [`Checking ${image.name}…`],
      accepted: [badge("accepted"), ` ${image.name}${size}`],
      rejected: [badge("rejected"), ` ${image.reason ?? ""}`],
      error: [badge("error"), ` ${image.reason ?? ""}`],
      deleted: [badge("deleted"), ` ${REFERENCE_GONE}`],
    }[image.status],
  );
}

// -- the job ----------------------------------------------------------------------------------

function formValues() {
  return {
    image_id: view.image?.image_id,
    prompt: $("#face-prompt").value,
    negative_prompt: $("#face-negative").value,
    gender: $("#face-gender").value,
    batch: $("#face-batch").value,
    width: $("#face-width").value,
    height: $("#face-height").value,
    num_inference_steps: $("#face-steps").value,
    guidance_scale: $("#face-guidance").value,
    remove_background: $("#face-remove-bg").checked,
    bg_color: $("#face-bg-hex").value,
  };
}

function clearField(name) {
  const [inputSelector, errorSelector] = FIELDS[name];
  $(inputSelector).removeAttribute("aria-invalid");
  setError($(errorSelector), "");
}

function markField(name, message) {
  if (!FIELDS[name]) return null;
  const [inputSelector, errorSelector] = FIELDS[name];
  const input = $(inputSelector);
  input.setAttribute("aria-invalid", "true");
  setError($(errorSelector), message);
  return input;
}

async function submit(event) {
  event.preventDefault();
  const check = !session.skipChecks;
  const error = $("#face-error");
  setError(error, "");
  for (const name of Object.keys(FIELDS)) clearField(name);
  const { body, errors } = faceRequest(formValues(), { check });
  if (check && view.image && body.image_id) {
    if (view.image.status === "deleted") {
      errors.push({ field: "image_id", message: REFERENCE_GONE });
    } else if (view.image.status === "pending") {
      errors.push({ field: "image_id", message: "Wait until the reference photo is checked." });
    } else if (view.image.status === "rejected") {
      errors.push({
        field: "image_id",
        message: `The reference photo was rejected (${view.image.reason}): choose another.`,
      });
    }
  }
  if (errors.length) {
    const inputs = errors.map(({ field, message }) => markField(field, message)).filter(Boolean);
    const summary =
      errors.length === 1
        ? errors[0].message
        : `Fix ${errors.length} things: ${errors.map((e) => e.message).join(" ")}`;
    setError(error, summary);
    announce(summary);
    (inputs[0] ?? $("#pick-reference")).focus();
    return;
  }
  const button = $("#face-submit");
  button.disabled = true;
  const key = intents.face.keyFor(body);
  try {
    const job = await session.api.createFaceJob(body, key);
    intents.face.done();
    rememberJob(job);
    openJob(job.job_id);
    if (window.matchMedia("(max-width: 900px)").matches) {
      $("#job-view").scrollIntoView({ behavior: "smooth", block: "start" });
    }
    announce(`Face-avatar job started: a batch of ${job.parameters?.batch ?? body.batch ?? 4}.`);
  } catch (failure) {
    if (!failure.transient) intents.face.done();
    if (failure.status === 409 && (await recheckReference(body.image_id, { looks: 1 }))) {
      // The server deleted the reference after its last job: ask for the photo again.
      setError(error, REFERENCE_GONE);
      $("#pick-reference").focus();
      return;
    }
    // Each field the API named gets its own sentence, in the form's words (humanize.js).
    const marked = Object.entries(failure.fields ?? {}).map(([field, text]) => markField(field, text));
    marked.find(Boolean)?.focus();
    reportError("The job was refused", failure, error);
  } finally {
    button.disabled = false;
  }
}

function openJob(jobId) {
  view.watchJob?.stop();
  if (view.job?.job_id !== jobId) view.note = "";
  view.job = view.jobs.get(jobId);
  renderJob();
  renderJobs();
  if (view.job && !FINISHED.has(view.job.status)) watchJob(jobId);
}

function watchJob(jobId) {
  let last = view.jobs.get(jobId)?.status;
  view.watchJob = poll(() => session.api.getFaceJob(jobId), {
    interval: 1500,
    isDone: (job) => FINISHED.has(job.status),
    onValue: (job) => {
      rememberJob(job);
      if (view.job?.job_id !== jobId) return;
      setError($("#job-error"), job.status === "failed" ? job.error || "The job failed." : "");
      if (job.status !== last) {
        last = job.status;
        if (job.status === "succeeded") {
          toast("success", "Face avatars ready", plural(job.avatars.length, "avatar"));
          announce(`${plural(job.avatars.length, "face avatar")} ready.`);
        } else if (job.status === "failed")
          announce(`The job failed: ${job.error ?? "no reason given"}.`);
        if (FINISHED.has(job.status)) recheckReference(job.image_id);
      }
    },
    onError: (error, failures, retrying) => {
      if (view.job?.job_id !== jobId) return;
      setError(
        $("#job-error"),
        retrying ? `Lost touch with the API (${error.message}); retrying…` : error.message,
      );
      if (!retrying) reportError("Stopped watching the job", error);
    },
  });
}

async function refreshJob(jobId) {
  try {
    rememberJob(await session.api.getFaceJob(jobId), { fresh: true });
  } catch (error) {
    reportError("Could not refresh the avatars", error);
  }
}

function rememberJob(job, { fresh = false } = {}) {
  jobSeen("face", job);
  if (!view.jobs.has(job.job_id)) view.order.unshift(job.job_id);
  view.jobs.set(job.job_id, job);
  if (view.job?.job_id === job.job_id) {
    view.job = job;
    if (FINISHED.has(job.status)) view.note = ""; // a cancel's answer is moot now
    renderJob({ fresh });
  }
  renderJobs();
}

function jobSummary(job) {
  const p = job.parameters ?? {};
  const parts = [`Batch of ${p.batch ?? "?"}`];
  if (p.width && p.height) parts.push(`${p.width}×${p.height}`);
  if (p.remove_background) parts.push("no background");
  return parts.join(" · ");
}

/** Draws the current job; its grid only when what it shows changed (polls answer new
 * presigned URLs each time) or `fresh` URLs replace expired ones. */
function renderJob({ fresh = false } = {}) {
  const job = view.job;
  const status = $("#job-status");
  const line = $("#job-line");
  const grid = $("#job-grid");
  setError($("#job-note"), view.note);
  if (!job) {
    status.hidden = true;
    $("#job-actions").replaceChildren();
    $("#job-actions").dataset.look = "";
    line.textContent = "No job yet: choose a photo and press “Make face avatars”.";
    grid.replaceChildren();
    grid.dataset.look = "";
    setError($("#job-error"), "");
    return;
  }
  badge(job.status, status);
  const actions = $("#job-actions");
  if (actions.dataset.look !== `${job.job_id}|${job.status}`) {
    actions.dataset.look = `${job.job_id}|${job.status}`;
    actions.replaceChildren(
      jobActions(job, {
        noun: "face-avatar job",
        avatars: job.avatars.length,
        reference: true,
        cancel: () => session.api.cancelFaceJob(job.job_id),
        remove: () => session.api.deleteFaceJob(job.job_id),
        onCancelled: (cancelled) => {
          rememberJob(cancelled);
          recheckReference(cancelled.image_id);
        },
        onDeleted: () => forgetJob(job.job_id),
        onNote: (text) => {
          view.note = text;
          setError($("#job-note"), text);
        },
      }),
    );
  }
  const p = job.parameters ?? {};
  const eta = FINISHED.has(job.status) ? "" : ` · ${etaText("face", job)}`;
  const cancelled =
    job.status === "cancelled" ? " · cancelled before it reached the provider: nothing was charged" : "";
  line.textContent = `${jobSummary(job)} · started ${when(job.created_at)}${eta}${cancelled}`;
  setError($("#job-error"), job.status === "failed" ? job.error || "The job failed." : "");
  const look = `${job.job_id}|${job.status}|${job.avatars.map((a) => a.avatar_id).join(",")}`;
  if (!fresh && grid.dataset.look === look) return;
  grid.dataset.look = look;
  const waiting = FINISHED.has(job.status) ? 0 : Math.max(0, (p.batch ?? 0) - job.avatars.length);
  renderAvatars(grid, job.avatars, {
    label: "Face avatar",
    placeholders: waiting,
    refresh: () => refreshJob(job.job_id),
  });
}

/** A job was deleted: it leaves the list, and the next one is shown. */
function forgetJob(jobId) {
  view.jobs.delete(jobId);
  view.order = view.order.filter((id) => id !== jobId);
  if (view.job?.job_id === jobId) {
    view.watchJob?.stop();
    view.job = null;
    view.note = "";
    if (view.order.length) openJob(view.order[0]);
    else renderJob();
  }
  renderJobs();
}

async function loadJobs(reset) {
  const api = session.api;
  if (!api) return;
  try {
    const page = await api.listFaceJobs(reset ? null : view.cursor);
    if (api !== session.api) return; // signed out or switched user meanwhile
    view.listed = true;
    if (reset) {
      view.order = view.order.filter((id) => !page.items.some((job) => job.job_id === id));
    }
    for (const job of page.items) {
      if (!view.jobs.has(job.job_id)) view.order.push(job.job_id);
      view.jobs.set(job.job_id, job);
    }
    view.cursor = page.next_cursor;
    renderJobs();
    if (!view.job && view.order.length) openJob(view.order[0]);
  } catch (error) {
    reportError("Could not list your face-avatar jobs", error);
  }
}

function renderJobs() {
  $("#job-list").replaceChildren(
    ...view.order.map((id) => {
      const job = view.jobs.get(id);
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "item",
            "aria-current": view.job?.job_id === id ? "true" : "false",
            dataset: { jobId: id },
            onclick: () => openJob(id),
          },
          h("span", { class: "item-icon subject-face", "aria-hidden": "true" }, "F"),
          h(
            "span",
            { class: "item-text" },
            h("span", { class: "item-title" }, jobSummary(job)),
            h("span", { class: "item-sub" }, when(job.created_at)),
          ),
          badge(job.status),
        ),
      );
    }),
  );
  show($("#jobs-empty"), view.listed && view.order.length === 0);
  show($("#more-jobs"), Boolean(view.cursor));
}
