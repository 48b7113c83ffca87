// What every part of the page shares: the session (API client, user, settings) and the one
// way an API failure is shown.

import { ApiError, IntentKeys } from "./api.js";
import { announce, setError, toast } from "./dom.js";

export const KEYS = {
  token: "ap.token",
  user: "ap.user",
  base: "ap.baseUrl",
  skip: "ap.skipChecks",
};

export function defaultBaseUrl() {
  return `${location.origin}/v1`;
}

export const session = {
  /** The signed-in `Api`, or null. */
  api: null,
  user: null,
  get baseUrl() {
    return sessionStorage.getItem(KEYS.base) || defaultBaseUrl();
  },
  /** Developers only: send what the forms hold, unchecked, to see the server's answer. */
  get skipChecks() {
    return sessionStorage.getItem(KEYS.skip) === "1";
  },
};

/** One `Idempotency-Key` per intent for each POST that starts paid work. */
export const intents = {
  training: new IntentKeys(),
  generation: new IntentKeys(),
  face: new IntentKeys(),
  instant: new IntentKeys(),
};

/**
 * Shows a failure as the API worded it (its `message`): in `inline`, next to what the user
 * just did, when given, else as a toast; `context` says what was being done. A 401 is left
 * to the sign-in form, which the page returns to.
 */
export function reportError(context, error, inline = null) {
  const message = error?.message ? error.message : String(error);
  if (error instanceof ApiError && error.status === 401) return;
  if (inline) setError(inline, message);
  else toast("error", context, message);
  announce(`${context}: ${message}`);
}
