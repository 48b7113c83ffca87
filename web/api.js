// The public API, called exactly as an app would: JSON over HTTP with a bearer token, and
// uploads as multipart POSTs straight to the presigned S3 URL. No framework, no globals.
// Every request passes through here, so here is where the page records what it sent and what
// came back, for the "How this was called" panel.

import { humanize } from "./humanize.js";

/**
 * An answer the API refused. `message` is for people (the API's field errors in the form's
 * words, see humanize.js); `raw` is the API's own `message`, `fields` one sentence per field
 * the API named, `retryAfter` its Retry-After in seconds.
 */
export class ApiError extends Error {
  constructor(status, message, field = null, body = null, extra = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.field = field;
    this.body = body;
    this.raw = extra.raw ?? message;
    this.fields = extra.fields ?? (field ? { [field]: message } : {});
    this.retryAfter = extra.retryAfter ?? null;
  }

  /** Worth retrying later (network down, throttled, server trouble)? */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

/** A random key for the `Idempotency-Key` header (works outside secure contexts too). */
export function newIdempotencyKey() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * One key per intent: retrying the same body (after a network error, say) reuses the key, so
 * the server answers the first response and starts nothing new; a different body gets a new key.
 */
export class IntentKeys {
  #body = null;
  #key = null;

  keyFor(body) {
    const text = JSON.stringify(body);
    if (text !== this.#body) {
      this.#body = text;
      this.#key = newIdempotencyKey();
    }
    return this.#key;
  }

  /** The work started (or was refused for good): the next press is a new intent. */
  done() {
    this.#body = this.#key = null;
  }
}

// -- what was called ------------------------------------------------------------------------

const RECORDED = 6;
/** The last requests the page made for a user action (polls excluded), newest first; a
 * "change" event on `calls` says a new one started or finished. */
export const calls = Object.assign(new EventTarget(), { items: [] });
let background = 0;

/** Runs `probe()` as background work (polling): its requests are not "what this action called". */
export function inBackground(probe) {
  background += 1;
  try {
    return probe();
  } finally {
    background -= 1;
  }
}

function record(entry) {
  if (background) return null;
  calls.items = [entry, ...calls.items].slice(0, RECORDED);
  calls.dispatchEvent(new Event("change"));
  return (answer) => {
    Object.assign(entry, answer);
    calls.dispatchEvent(new Event("change"));
  };
}

/** The request's headers as shown to people: the bearer token elided. */
function shownHeaders(headers) {
  const shown = { ...headers };
  if (shown.Authorization) shown.Authorization = "Bearer …";
  return shown;
}

/** A single-quoted shell word. */
const shellWord = (text) => `'${String(text).replaceAll("'", "'\\''")}'`;

/** A copy-pasteable curl for a recorded call (`$TOKEN` for the bearer token). */
export function curlFor(entry) {
  const lines = [`curl -i -X ${entry.method} ${shellWord(entry.url)}`];
  for (const [name, value] of Object.entries(entry.headers ?? {})) {
    if (name === "Authorization") lines.push(`-H "Authorization: Bearer $TOKEN"`);
    else lines.push(`-H ${shellWord(`${name}: ${value}`)}`);
  }
  if (entry.form) {
    for (const [name, value] of Object.entries(entry.form)) {
      lines.push(`-F ${shellWord(`${name}=${value}`)}`);
    }
    lines.push(`-F ${shellWord(`file=@${entry.fileName || "photo.jpg"}`)}`);
  } else if (entry.body !== undefined) {
    lines.push(`--data ${shellWord(entry.body)}`);
  }
  return lines.join(" \\\n  ");
}

export class Api {
  constructor(baseUrl, token, { onUnauthorized } = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  async request(method, path, { body, idempotencyKey, query } = {}) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
    let url = `${this.baseUrl}${path}`;
    const params = new URLSearchParams();
    for (const [name, value] of Object.entries(query ?? {})) {
      if (value !== undefined && value !== null && value !== "") params.set(name, value);
    }
    if ([...params].length) url += `?${params}`;

    const text = body === undefined ? undefined : JSON.stringify(body);
    const finish = record({
      method,
      url,
      headers: shownHeaders(headers),
      body: text,
      at: new Date().toISOString(),
      status: null,
    });
    let response;
    try {
      response = await fetch(url, { method, headers, body: text, cache: "no-store" });
    } catch (error) {
      finish?.({ status: 0, answer: `(no answer: ${error.message})` });
      throw new ApiError(0, `Could not reach the API at ${this.baseUrl} (${error.message}).`);
    }
    const answerText = response.status === 204 ? "" : await response.text();
    const retryAfter = response.headers.get("Retry-After");
    finish?.({
      status: response.status,
      statusText: response.statusText,
      answer: answerText,
      retryAfter,
    });
    const data = parseJson(answerText);
    if (!response.ok) {
      const raw =
        typeof data?.message === "string" && data.message
          ? data.message
          : `${response.status} ${response.statusText || "error"}`;
      const human = humanize(response.status, { ...data, message: raw }, retryAfter);
      const error = new ApiError(response.status, human.message || raw, data?.field ?? null, data, {
        raw,
        fields: human.fields,
        retryAfter: retryAfter === null ? null : Number(retryAfter),
      });
      if (response.status === 401) this.onUnauthorized?.(error);
      throw error;
    }
    return data;
  }

  // -- health, models and selfies ---------------------------------------------------------
  health() {
    return this.request("GET", "/health");
  }
  createModel(subject, name) {
    return this.request("POST", "/models", { body: name ? { subject, name } : { subject } });
  }
  listModels(cursor) {
    return this.request("GET", "/models", { query: { limit: 20, cursor } });
  }
  getModel(modelId) {
    return this.request("GET", `/models/${encodeURIComponent(modelId)}`);
  }
  deleteModel(modelId) {
    return this.request("DELETE", `/models/${encodeURIComponent(modelId)}`);
  }
  requestSelfieUploads(modelId, contentTypes) {
    const files = contentTypes.map((content_type) => ({ content_type }));
    return this.request("POST", `/models/${encodeURIComponent(modelId)}/selfies`, {
      body: { files },
    });
  }
  listSelfies(modelId) {
    return this.request("GET", `/models/${encodeURIComponent(modelId)}/selfies`);
  }
  selfieRules() {
    return this.request("GET", "/selfie-rules");
  }
  startTraining(modelId, idempotencyKey) {
    return this.request("POST", `/models/${encodeURIComponent(modelId)}/training`, {
      idempotencyKey,
    });
  }
  cancelTraining(modelId) {
    return this.request("POST", `/models/${encodeURIComponent(modelId)}/training/cancel`);
  }

  // -- generations ------------------------------------------------------------------------
  styles() {
    return this.request("GET", "/styles");
  }
  createGeneration(modelId, requests, idempotencyKey) {
    return this.request("POST", `/models/${encodeURIComponent(modelId)}/generations`, {
      body: { requests },
      idempotencyKey,
    });
  }
  listGenerations(modelId, cursor) {
    return this.request("GET", `/models/${encodeURIComponent(modelId)}/generations`, {
      query: { cursor },
    });
  }
  getGeneration(generationId) {
    return this.request("GET", `/generations/${encodeURIComponent(generationId)}`);
  }
  cancelGeneration(generationId) {
    return this.request("POST", `/generations/${encodeURIComponent(generationId)}/cancel`);
  }
  deleteGeneration(generationId) {
    return this.request("DELETE", `/generations/${encodeURIComponent(generationId)}`);
  }

  // -- face avatars -----------------------------------------------------------------------
  requestFaceUpload(contentType) {
    return this.request("POST", "/face-avatars/uploads", { body: { content_type: contentType } });
  }
  getFaceUpload(imageId) {
    return this.request("GET", `/face-avatars/uploads/${encodeURIComponent(imageId)}`);
  }
  createFaceJob(parameters, idempotencyKey) {
    return this.request("POST", "/face-avatars", { body: parameters, idempotencyKey });
  }
  getFaceJob(jobId) {
    return this.request("GET", `/face-avatars/${encodeURIComponent(jobId)}`);
  }
  listFaceJobs(cursor) {
    return this.request("GET", "/face-avatars", { query: { cursor } });
  }
  cancelFaceJob(jobId) {
    return this.request("POST", `/face-avatars/${encodeURIComponent(jobId)}/cancel`);
  }
  deleteFaceJob(jobId) {
    return this.request("DELETE", `/face-avatars/${encodeURIComponent(jobId)}`);
  }

  // -- instant avatars (the same reference upload as face avatars) ------------------------
  createInstantJob(body, idempotencyKey) {
    return this.request("POST", "/instant-avatars", { body, idempotencyKey });
  }
  getInstantJob(jobId) {
    return this.request("GET", `/instant-avatars/${encodeURIComponent(jobId)}`);
  }
  listInstantJobs(cursor) {
    return this.request("GET", "/instant-avatars", { query: { cursor } });
  }
  cancelInstantJob(jobId) {
    return this.request("POST", `/instant-avatars/${encodeURIComponent(jobId)}/cancel`);
  }
  deleteInstantJob(jobId) {
    return this.request("DELETE", `/instant-avatars/${encodeURIComponent(jobId)}`);
  }
}

async function readJson(response) {
  if (response.status === 204) return null;
  return parseJson(await response.text());
}

function parseJson(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { message: text.slice(0, 300) };
  }
}

/**
 * A bearer token from the local stack's dev-token endpoint (`POST /local/token` next to the
 * API), or `null` when there is none: a deployed stack, where the developer pastes a token.
 */
export async function devToken(baseUrl, user) {
  const url = new URL("/local/token", new URL(baseUrl, location.href));
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user }),
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, `Could not reach ${url.origin} (${error.message}).`);
  }
  if (response.status === 404 || response.status === 405) return null;
  const data = await readJson(response);
  if (!response.ok) {
    throw new ApiError(response.status, data?.message ?? `${response.status}`, data?.field);
  }
  return data.token;
}

/**
 * Uploads `file` with the presigned POST `slot` ({url, fields}): every policy field, then the
 * file as the last form field named `file`, as S3 requires. XMLHttpRequest, not fetch, because
 * only it reports upload progress. Resolves on S3's 2xx; rejects with S3's own message.
 */
export function uploadToPresignedPost(slot, file, onProgress = () => {}) {
  const finish = record({
    method: "POST",
    url: slot.url,
    headers: {},
    form: slot.fields,
    fileName: file.name,
    body: `multipart/form-data: ${Object.keys(slot.fields).length} policy fields, then file=${file.name}`,
    at: new Date().toISOString(),
    status: null,
  });
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const [name, value] of Object.entries(slot.fields)) form.append(name, value);
    form.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", slot.url);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      finish?.({ status: xhr.status, statusText: xhr.statusText, answer: xhr.responseText });
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve();
      } else {
        reject(new ApiError(xhr.status, `The upload was refused: ${s3Message(xhr)}`));
      }
    });
    xhr.addEventListener("error", () => {
      finish?.({ status: 0, answer: "(no answer: the storage service could not be reached)" });
      reject(new ApiError(0, "The upload failed: the storage service could not be reached."));
    });
    xhr.addEventListener("abort", () => reject(new ApiError(0, "The upload was cancelled.")));
    xhr.send(form);
  });
}

function s3Message(xhr) {
  const xml = new DOMParser().parseFromString(xhr.responseText || "<x/>", "application/xml");
  const message = xml.querySelector("Error > Message")?.textContent;
  const code = xml.querySelector("Error > Code")?.textContent;
  if (message) return code ? `${message} (${code})` : message;
  return `${xhr.status} ${xhr.statusText || "error"}`;
}

const UPLOAD_TYPES = ["image/jpeg", "image/png", "image/heic", "image/heif", "image/webp"];
const UPLOAD_TYPE_BY_EXTENSION = {
  jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png",
  heic: "image/heic", heif: "image/heif", webp: "image/webp",
};

// What a presigned upload may declare, from the browser's type or else the file name.
export function contentTypeOf(file) {
  if (UPLOAD_TYPES.includes(file.type)) return file.type;
  const extension = /\.([a-z]+)$/i.exec(file.name)?.[1].toLowerCase();
  return UPLOAD_TYPE_BY_EXTENSION[extension] ?? null;
}
