// Cancel and delete on a job (a generation, a face-avatar or an instant-avatar batch), the
// same for every kind: "Cancel" while it is queued or running, "Delete" once it has ended.
// A cancel is free until the provider is sent the work; after that the API answers 409 that
// the work is paid for and kept, and the page says so in the API's own words.

import { announce, h, toast } from "./dom.js";
import { confirmDialog } from "./models.js";
import { reportError } from "./state.js";

/** Statuses a job can still be cancelled in. */
export const OPEN = new Set(["queued", "running"]);
/** Statuses a job has ended in: it can be deleted. */
export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

const capitalise = (text) => text.charAt(0).toUpperCase() + text.slice(1);

/**
 * The job's buttons: `Cancel` while it is open, `Delete` once it has ended. `noun` names it
 * in what the page says ("generation", "face-avatar job"); `cancel()` and `remove()` call the
 * API; `onCancelled(job)`, `onDeleted()` and `onNote(text)` update the page.
 */
export function jobActions(
  job,
  { noun, avatars = 0, reference = false, cancel, remove, onCancelled, onDeleted, onNote },
) {
  const open = OPEN.has(job.status);
  const button = open
    ? h("button", { type: "button", class: "btn btn-ghost btn-sm", dataset: { action: "cancel" } }, "Cancel")
    : h(
        "button",
        { type: "button", class: "btn btn-danger-ghost btn-sm", dataset: { action: "delete" } },
        "Delete",
      );
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      if (open) await cancelJob({ noun, cancel, onCancelled, onNote });
      else await deleteJob({ noun, avatars, reference, remove, onDeleted, onNote });
    } finally {
      button.disabled = false;
    }
  });
  return h("span", { class: "job-actions" }, button);
}

async function cancelJob({ noun, cancel, onCancelled, onNote }) {
  try {
    const job = await cancel();
    onNote?.("");
    onCancelled?.(job);
    toast("success", `${capitalise(noun)} cancelled`, "It never reached the provider: nothing was charged.");
    announce(`${capitalise(noun)} cancelled; nothing was charged.`);
  } catch (error) {
    if (error.status === 409) {
      // Already sent to the provider: paid for, so it runs to its end and is kept.
      onNote?.(error.message);
      announce(error.message);
    } else reportError(`Could not cancel the ${noun}`, error);
  }
}

async function deleteJob({ noun, avatars, reference, remove, onDeleted, onNote }) {
  const what = avatars ? `It and its ${avatars === 1 ? "avatar" : `${avatars} avatars`} are` : "It is";
  const confirmed = await confirmDialog(
    `Delete this ${noun}?`,
    `${what} deleted for good` +
      (reference ? ", with the reference photo it used unless another job still needs it" : "") +
      ". This cannot be undone.",
  );
  if (!confirmed) return;
  try {
    await remove();
    onNote?.("");
    onDeleted?.();
    toast("success", `${capitalise(noun)} deleted`);
    announce(`${capitalise(noun)} deleted.`);
  } catch (error) {
    if (error.status === 404) {
      onDeleted?.(); // already gone
    } else if (error.status === 409) {
      onNote?.(error.message);
      announce(error.message);
    } else reportError(`Could not delete the ${noun}`, error);
  }
}
