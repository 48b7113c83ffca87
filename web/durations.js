// How long a job usually takes, said while it runs: from what this browser saw of finished jobs
// of the same kind (kept in localStorage), else the providers' typical times.

const KEY = "ap.durations";
const STARTS = "ap.trainingStarts";
const KEPT = 10;
/** Seconds, when this browser has seen none of a kind finish yet. */
export const DEFAULT_SECONDS = { training: 20 * 60, generation: 60, face: 40, instant: 40 };

function read(key) {
  try {
    const value = JSON.parse(localStorage.getItem(key) || "{}");
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

const write = (key, value) => localStorage.setItem(key, JSON.stringify(value));

/** Notes that job `id` of `kind` took from `startIso` to `endIso` (each job counted once). */
export function observe(kind, id, startIso, endIso) {
  const seconds = (Date.parse(endIso) - Date.parse(startIso)) / 1000;
  if (!id || !Number.isFinite(seconds) || seconds <= 0) return;
  const all = read(KEY);
  const seen = Array.isArray(all[kind]) ? all[kind] : [];
  if (seen.some((entry) => entry.id === id)) return;
  all[kind] = [...seen, { id, seconds }].slice(-KEPT);
  write(KEY, all);
}

/** Training has no start time of its own: the model's `updated_at` when it was seen training. */
export function trainingSeen(model) {
  const starts = read(STARTS);
  if (model.status === "training" && !starts[model.model_id]) {
    starts[model.model_id] = model.updated_at;
    write(STARTS, starts);
  } else if (model.status === "ready" && starts[model.model_id]) {
    observe("training", model.model_id, starts[model.model_id], model.updated_at);
    delete starts[model.model_id];
    write(STARTS, starts);
  }
}

/** Notes a finished job (a generation, a face or an instant batch) from its own timestamps. */
export function jobSeen(kind, job) {
  if (job?.status === "succeeded") {
    observe(kind, job.generation_id || job.job_id, job.created_at, job.updated_at);
  }
}

/** The typical seconds for `kind`: the median of those seen, else the default. */
export function typicalSeconds(kind) {
  const seen = (read(KEY)[kind] ?? []).map((entry) => entry.seconds).sort((a, b) => a - b);
  if (!seen.length) return DEFAULT_SECONDS[kind];
  const middle = Math.floor(seen.length / 2);
  return seen.length % 2 ? seen[middle] : (seen[middle - 1] + seen[middle]) / 2;
}

/** "usually about 20 minutes", "usually about 40 seconds". */
export function expectedText(kind) {
  const seconds = typicalSeconds(kind);
  if (seconds < 60) {
    const n = Math.max(1, Math.round(seconds));
    return `usually about ${n} second${n === 1 ? "" : "s"}`;
  }
  const minutes = Math.round(seconds / 60);
  return `usually about ${minutes} minute${minutes === 1 ? "" : "s"}`;
}

/**
 * While the provider is at its rate limit, paid work waits its turn and the API says where
 * it stands (`queue`): "waiting for the provider: 12 ahead, expected to start about 14:05".
 * Otherwise how long such a job usually takes.
 */
export function etaText(kind, job) {
  const queue = job && job.queue;
  if (!queue) return expectedText(kind);
  const start = new Date(queue.estimated_start_at);
  const at = Number.isNaN(start.getTime())
    ? ""
    : `, expected to start about ${start.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
  return `waiting for the provider: ${queue.position} ahead${at}`;
}
