// The caller's account: usage against each quota (GET /v1/me), what the stack holds of them,
// and deleting all of it (DELETE /v1/me, followed with GET /v1/me/deletion).

import { $, announce, h, plural, setError, toast, when } from "./dom.js";
import { confirmDialog } from "./models.js";
import { poll } from "./poll.js";
import { session } from "./state.js";

const LIMIT_TEXT = {
  concurrent_trainings: "Trainings running at once",
  trainings_per_day: "Trainings in 24 hours",
  avatars_per_day: "Avatars in 24 hours",
  face_batches_per_day: "Face-avatar batches in 24 hours",
  face_images_per_day: "Face avatars in 24 hours",
};

const HOLDING_TEXT = [
  ["models", "model"],
  ["selfies", "selfie photo"],
  ["generations", "generation"],
  ["avatars", "avatar"],
  ["face_images", "reference photo"],
  ["face_jobs", "face-avatar job"],
  ["instant_jobs", "instant-avatar job"],
];

const view = { me: null, deletion: null };

function limitRow(limit) {
  const label = LIMIT_TEXT[limit.name] ?? limit.description;
  if (limit.limit === null) {
    return h(
      "li",
      { class: "limit" },
      h("span", { class: "limit-name" }, label),
      h("span", { class: "muted small" }, `${limit.used} used · no limit`),
    );
  }
  const full = limit.remaining === 0;
  const frees = limit.frees_at ? `next frees ${when(limit.frees_at)}` : "";
  return h(
    "li",
    { class: `limit${full ? " limit-full" : ""}` },
    h("span", { class: "limit-name", id: `limit-${limit.name}` }, label),
    h("progress", {
      max: String(limit.limit),
      value: String(Math.min(limit.used, limit.limit)),
      "aria-labelledby": `limit-${limit.name}`,
    }),
    h(
      "span",
      { class: "small" },
      `${limit.used} of ${limit.limit}`,
      full ? " · limit reached" : "",
      frees ? ` · ${frees}` : "",
    ),
  );
}

/** "3 models, 12 avatars and 1 reference photo" (nothing: "nothing yet"). */
export function holdingsText(holdings) {
  const parts = HOLDING_TEXT.filter(([key]) => holdings[key] > 0).map(([key, one]) =>
    plural(holdings[key], one),
  );
  if (!parts.length) return "nothing yet";
  return parts.length === 1 ? parts[0] : `${parts.slice(0, -1).join(", ")} and ${parts.at(-1)}`;
}

function render() {
  const me = view.me;
  $("#limit-list").replaceChildren(...(me ? me.limits.map(limitRow) : []));
  $("#holdings-text").textContent = me ? `We keep ${holdingsText(me.holdings)} of yours.` : "";
}

export async function loadAccount() {
  if (!session.api) return;
  try {
    view.me = await session.api.request("GET", "/me");
    setError($("#account-error"), "");
  } catch (error) {
    setError($("#account-error"), `Could not read your usage: ${error.message}`);
  }
  render();
}

export function resetAccount() {
  view.deletion?.watch?.stop();
  Object.assign(view, { me: null, deletion: null });
  render();
  $("#deletion-status").textContent = "";
}

async function deleteEverything(onDeleted) {
  await loadAccount();
  const what = view.me ? holdingsText(view.me.holdings) : "everything we hold of you";
  const confirmed = await confirmDialog(
    "Delete all your data?",
    `This deletes ${what}: every selfie, reference photo, model, avatar, job, saved request ` +
      "and event, in both buckets and the table. Jobs still running are stopped. It cannot be undone.",
    "Delete everything",
  );
  if (!confirmed) return;
  const button = $("#delete-me");
  button.disabled = true;
  const status = $("#deletion-status");
  try {
    const started = await session.api.request("DELETE", "/me");
    status.textContent = "Deleting your data…";
    announce("Deleting all your data.");
    view.deletion = { id: started.deletion_id };
    view.deletion.watch = poll(() => session.api.request("GET", "/me/deletion"), {
      interval: 1500,
      isDone: (deletion) => deletion.status !== "running",
      onValue(deletion) {
        if (deletion.status === "running") return;
        button.disabled = false;
        if (deletion.status === "succeeded") {
          toast("success", "Your data was deleted", "Nothing of yours is left in this stack.");
          onDeleted();
        } else {
          status.textContent = `The deletion stopped: ${deletion.error ?? "unknown error"}. Try again.`;
        }
      },
      onError(error, _failures, retry) {
        if (!retry) {
          button.disabled = false;
          status.textContent = `Could not follow the deletion: ${error.message}`;
        }
      },
    });
  } catch (error) {
    button.disabled = false;
    status.textContent = "";
    toast("error", "Could not delete your data", error.message);
  }
}

export function initAccount({ onDeleted }) {
  $("#refresh-account").addEventListener("click", loadAccount);
  $("#delete-me").addEventListener("click", () => deleteEverything(onDeleted));
}
