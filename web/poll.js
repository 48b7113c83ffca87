// Polling that an app can ship: a steady interval while things go well, exponential back-off
// (with jitter) while the API is unreachable, throttled or failing, and a stop on a terminal
// state or on an answer that will never change (401, 404, other 4xx).
// Polls are background work: their requests are not what "How this was called" shows.

import { inBackground } from "./api.js";

/**
 * Calls `probe()` now and then every `interval` ms until `isDone(value)`; `onValue(value)` sees
 * every answer, `onError(error, failures)` every failure. Returns `{ stop() }`.
 */
export function poll(probe, { interval = 1500, maxInterval = 20000, isDone, onValue, onError }) {
  let stopped = false;
  let timer = null;
  let failures = 0;

  const schedule = (delay) => {
    if (!stopped) timer = setTimeout(tick, delay);
  };

  async function tick() {
    timer = null;
    if (stopped) return;
    try {
      const value = await inBackground(probe);
      if (stopped) return;
      failures = 0;
      onValue?.(value);
      if (isDone?.(value)) {
        stopped = true;
        return;
      }
      schedule(interval);
    } catch (error) {
      if (stopped) return;
      failures += 1;
      const retry = error?.transient ?? true;
      onError?.(error, failures, retry);
      if (!retry) {
        stopped = true;
        return;
      }
      const backoff = Math.min(maxInterval, interval * 2 ** failures);
      schedule(backoff / 2 + Math.random() * (backoff / 2));
    }
  }

  schedule(0);
  return {
    stop() {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
    get running() {
      return !stopped;
    },
  };
}
