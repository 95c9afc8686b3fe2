// @ts-check
/**
 * storyq-polling.js: the timing of the client's job watchers: terminal statuses, the poll
 * interval derived from a job (pollDelay), and the sleep, jitter and Realtime wake-up that
 * StoryqClient's watchJob and subscribe use. Import the public names from storyq-client.js.
 */

/** @typedef {import('./storyq-client.js').Job} Job */

export const TERMINAL_STATUSES = Object.freeze(['completed', 'failed', 'cancelled']);

/** @param {string | undefined | null} status */
export function isTerminal(status) {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

/** @param {number} value @param {number} low @param {number} high */
export function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

/**
 * How long to wait before asking about `job` again, in milliseconds (no jitter).
 *
 * - pending: near the head of the queue soon, far back rarely: a twentieth of the ETA,
 *   3 s at position 0, between `min` and `max` (2-15 s by default);
 * - processing: a tenth of the remaining time estimated from progress and elapsed time,
 *   between `min` and 5 s;
 * - terminal: null (stop).
 *
 * @param {Job} job
 * @param {{minMs?: number, maxMs?: number, now?: number}} [options]
 * @returns {number | null}
 */
export function pollDelay(job, { minMs = 2000, maxMs = 15000, now = Date.now() } = {}) {
  if (isTerminal(job.status)) return null;
  if (job.status === 'processing') {
    const ceiling = Math.min(maxMs, 5000);
    const percent = job.progress?.percent ?? 0;
    const started = job.startedAt ? Date.parse(job.startedAt) : NaN;
    if (percent > 0 && !Number.isNaN(started)) {
      const elapsed = Math.max(0, now - started);
      const remaining = (elapsed * (100 - percent)) / percent;
      return clamp(remaining / 10, minMs, ceiling);
    }
    return clamp(3000, minMs, ceiling);
  }
  const wait = job.waitTime;
  if (!wait) return clamp(5000, minMs, maxMs);
  if (wait.position <= 0) return clamp(3000, minMs, maxMs);
  return clamp((wait.estimatedMinutes * 60_000) / 20, minMs, maxMs);
}

/** @param {AbortSignal | undefined} signal */
export function abortError(signal) {
  if (signal?.reason instanceof Error) return signal.reason;
  return new DOMException('watching was aborted', 'AbortError');
}

/**
 * Sleep for `ms`, or less when `signal` aborts (rejects) or `wake` resolves (returns early).
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @param {{promise: Promise<void>} | null} [wake]
 * @returns {Promise<void>}
 */
export function sleep(ms, signal, wake = null) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortError(signal));
      return;
    }
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve();
    };
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
    wake?.promise.then(done);
  });
}

/** ±10 % so that many tabs do not poll in lock-step. @param {number} ms */
export function jitter(ms) {
  return Math.round(ms * (0.9 + Math.random() * 0.2));
}

/**
 * A one-shot "wake up" that can be re-armed: realtime events resolve it, sleep() races it.
 * @returns {{promise: Promise<void>, fire: () => void, rearm: () => void}}
 */
export function wakeSignal() {
  /** @type {() => void} */
  let fire = () => {};
  const self = {
    promise: Promise.resolve(),
    fire: () => fire(),
    rearm: () => {
      self.promise = new Promise((resolve) => {
        fire = resolve;
      });
    },
  };
  self.rearm();
  return self;
}
