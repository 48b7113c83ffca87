// Instant avatars: Picsart's one-image flow, from the reference photo the face-avatar form
// uploaded. The subjects and the count cap come from GET /v1/styles (they are configuration).

import { $, announce, badge, h, plural, setError, toast, when } from "./dom.js";
import { etaText, jobSeen } from "./durations.js";
import { REFERENCE_GONE, acceptedReference, recheckReference, referenceDeleted } from "./faces.js";
import { renderAvatars } from "./gallery.js";
import { FINISHED, jobActions } from "./jobs.js";
import { poll } from "./poll.js";
import { intents, reportError, session } from "./state.js";

const view = { offer: null, job: null, watch: null, note: "" };

export function initInstant() {
  $("#instant-form").addEventListener("submit", submit);
}

export function resetInstant() {
  view.watch?.stop();
  Object.assign(view, { offer: null, job: null, watch: null, note: "" });
  render();
  setError($("#instant-error"), "");
}

/** The tab was opened: learn the subjects on offer the first time. */
export async function showInstant() {
  if (view.offer || !session.api) return;
  try {
    view.offer = await session.api.styles();
  } catch (error) {
    reportError("Could not read the subjects on offer", error);
    return;
  }
  const subjects = view.offer.instant_subjects ?? [];
  $("#instant-subject").replaceChildren(
    ...subjects.map((subject) => h("option", { value: subject }, subject)),
  );
  const count = $("#instant-count");
  count.max = String(view.offer.max_instant_avatars);
  $("#instant-count-hint").textContent = `1–${view.offer.max_instant_avatars}`;
}

async function submit(event) {
  event.preventDefault();
  const error = $("#instant-error");
  setError(error, "");
  const imageId = acceptedReference();
  if (!imageId && !session.skipChecks) {
    setError(
      error,
      referenceDeleted()
        ? REFERENCE_GONE
        : "Choose a reference photo above and wait until it is accepted.",
    );
    return;
  }
  const body = {
    image_id: imageId ?? "",
    subject: $("#instant-subject").value,
    count: Number($("#instant-count").value),
  };
  const prompt = $("#instant-prompt").value.trim();
  if (prompt) body.prompt = prompt;
  const button = $("#instant-submit");
  button.disabled = true;
  try {
    const job = await session.api.createInstantJob(body, intents.instant.keyFor(body));
    intents.instant.done();
    view.job = job;
    view.note = "";
    render();
    watch(job.job_id);
    announce(`Instant-avatar job started: ${plural(job.count, "avatar")}.`);
  } catch (failure) {
    if (!failure.transient) intents.instant.done();
    if (failure.status === 409 && (await recheckReference(body.image_id, { looks: 1 }))) {
      setError(error, REFERENCE_GONE); // deleted after its last job: choose it again
      return;
    }
    reportError("The job was refused", failure, error);
  } finally {
    button.disabled = false;
  }
}

function watch(jobId) {
  view.watch?.stop();
  view.watch = poll(() => session.api.getInstantJob(jobId), {
    interval: 1500,
    isDone: (job) => FINISHED.has(job.status),
    onValue: (job) => {
      if (view.job?.job_id !== jobId) return;
      const changed = job.status !== view.job.status;
      view.job = job;
      if (FINISHED.has(job.status)) view.note = ""; // a cancel's answer is moot now
      render();
      if (changed && job.status === "succeeded") {
        toast("success", "Instant avatars ready", plural(job.avatars.length, "avatar"));
      }
      if (changed && FINISHED.has(job.status)) recheckReference(job.image_id);
    },
    onError: (error, failures, retrying) => {
      if (!retrying) reportError("Stopped watching the job", error);
    },
  });
}

function render() {
  const job = view.job;
  const status = $("#instant-status");
  const grid = $("#instant-grid");
  setError($("#instant-note"), view.note);
  if (!job) {
    status.hidden = true;
    $("#instant-actions").replaceChildren();
    $("#instant-actions").dataset.look = "";
    $("#instant-line").textContent = "No instant-avatar job yet.";
    grid.replaceChildren();
    return;
  }
  badge(job.status, status);
  const actions = $("#instant-actions");
  const look = `${job.job_id}|${job.status}|${job.avatars.length}`;
  if (actions.dataset.look !== look) {
    actions.dataset.look = look;
    actions.replaceChildren(jobActions(job, {
      noun: "instant-avatar job",
      avatars: job.avatars.length,
      reference: true,
      cancel: () => session.api.cancelInstantJob(job.job_id),
      remove: () => session.api.deleteInstantJob(job.job_id),
      onCancelled: (cancelled) => {
        view.watch?.stop();
        view.job = cancelled;
        render();
        recheckReference(cancelled.image_id);
      },
      onDeleted: () => {
        view.watch?.stop();
        view.job = null;
        view.note = "";
        render();
      },
      onNote: (text) => {
        view.note = text;
        setError($("#instant-note"), text);
      },
    }));
  }
  jobSeen("instant", job);
  const eta = FINISHED.has(job.status) ? "" : ` · ${etaText("instant", job)}`;
  const cancelled =
    job.status === "cancelled" ? " · cancelled before it reached the provider: nothing was charged" : "";
  $("#instant-line").textContent =
    `${plural(job.count, job.subject + " avatar")} · started ${when(job.created_at)}${eta}${cancelled}`;
  setError($("#instant-error"), job.status === "failed" ? job.error || "The job failed." : "");
  const waiting = FINISHED.has(job.status) ? 0 : Math.max(0, job.count - job.avatars.length);
  renderAvatars(grid, job.avatars, {
    label: "Instant avatar",
    placeholders: waiting,
    refresh: async () => {
      view.job = await session.api.getInstantJob(job.job_id);
      render();
    },
  });
}
