// @ts-check
/**
 * storyq-polling.js: the timing of the client's job watchers: terminal statuses, the wait
 * before the next poll (nextPollMs: the server's Retry-After, else pollDelay), what a Realtime
 * row change means (rowChange, withWords; storyFromRow, isNewerStory for a story's row), and
 * the sleep, jitter and Realtime wake-up that StoryqClient's watchJob, subscribe and watchStory
 * use. Import the public names from storyq-client.js.
 */

/** @typedef {import('./storyq-client.js').Job} Job */
/** @typedef {import('./storyq-client.js').Story} Story */

export const TERMINAL_STATUSES = Object.freeze(['completed', 'failed', 'cancelled']);

/** Defaults of the watchers' options (WatchOptions). */
export const DEFAULT_MIN_INTERVAL_MS = 2000;
export const DEFAULT_MAX_INTERVAL_MS = 15000;
/** The longest a server's Retry-After may make a poll wait when the caller set no ceiling. */
export const SERVER_MAX_INTERVAL_MS = 60000;
/** With Realtime up, the fallback poll comes at least this long after the last one. */
export const DEFAULT_REALTIME_INTERVAL_MS = 30000;

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

/**
 * The wait before the next poll after a 200 answer about `job`, in milliseconds, or null when
 * the job is terminal (stop).
 *
 * - The server's suggestion (`retryAfterMs`, from Retry-After) when it sent one: the API knows
 *   the queue and the progress (2-30 s, shorter as the end nears). It is kept within
 *   [`minMs`, `maxMs`] when the caller set `maxMs`, else within [`minMs`, 60 s].
 * - Otherwise `pollDelay(job)` within [`minMs`, `maxMs` or 15 s], jittered (±10 %).
 * - With Realtime up (`realtimeMs` not null), at least `realtimeMs`: row changes wake the
 *   poller, the poll only refreshes what they do not carry.
 *
 * @param {Job} job
 * @param {{retryAfterMs?: number | null, minMs?: number, maxMs?: number | null,
 *   realtimeMs?: number | null, now?: number, spread?: (ms: number) => number}} [options]
 * @returns {number | null}
 */
export function nextPollMs(job, {
  retryAfterMs = null, minMs = DEFAULT_MIN_INTERVAL_MS, maxMs = null, realtimeMs = null,
  now = Date.now(), spread = jitter,
} = {}) {
  const ceiling = Math.max(minMs, maxMs ?? DEFAULT_MAX_INTERVAL_MS);
  const fallback = pollDelay(job, { minMs, maxMs: ceiling, now });
  if (fallback === null) return null;
  let ms = retryAfterMs !== null
    ? clamp(retryAfterMs, minMs, maxMs === null ? SERVER_MAX_INTERVAL_MS : ceiling)
    : spread(fallback);
  if (realtimeMs !== null) ms = Math.max(ms, realtimeMs);
  return ms;
}

/**
 * What a postgres_changes payload about the job's row means to a watcher whose last view of
 * the job had `knownStatus`: `wake` when the poller should ask the API now (the status
 * changed, the row was inserted or deleted, or the payload cannot tell), else the words
 * written (`progress_words`, or null): the worker's heartbeats change the row every few
 * seconds while it writes, and those need no request. `old` holds the previous row only where
 * the table's replica identity is full and RLS lets Realtime send it; `knownStatus` decides
 * when it does not.
 * @param {any} payload supabase-js's RealtimePostgresChangesPayload
 * @param {string | null | undefined} knownStatus
 * @returns {{wake: boolean, words: number | null}}
 */
export function rowChange(payload, knownStatus) {
  const row = payload?.new;
  if (payload?.eventType !== 'UPDATE' || !row || typeof row.status !== 'string') {
    return { wake: true, words: null };
  }
  const old = payload.old;
  const left = old && typeof old.status === 'string' && old.status !== row.status;
  if (row.status !== knownStatus || left) return { wake: true, words: null };
  return { wake: false, words: typeof row.progress_words === 'number' ? row.progress_words : null };
}

/**
 * `job` (processing) with `words` written, its percent scaled from the API's last view (the
 * row has no target length; the next poll brings the API's own figure): the same object when
 * nothing changes.
 * @param {Job} job
 * @param {number} words
 * @returns {Job}
 */
export function withWords(job, words) {
  const before = job.progress;
  if (job.status !== 'processing' || !before || before.words === words) return job;
  let percent = before.percent;
  if (before.words > 0 && before.percent > 0) {
    // The API floors the percent: the midpoint of what it may have been guesses the target.
    const target = (before.words * 100) / (before.percent + 0.5);
    percent = Math.min(99, Math.floor((words * 100) / target));
    if (words > before.words) percent = Math.max(percent, before.percent);
  }
  return { ...job, progress: { words, percent } };
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

/** A story's statuses after which its text changes no more. @param {string | undefined | null} status */
export function isStoryFinished(status) {
  return status === 'ready' || status === 'failed' || status === 'cancelled';
}

/**
 * The story a postgres_changes payload about its `stories` row shows, over `known` (the last
 * view: what the row has no column for, such as `jobId`, is kept), or null when the payload
 * cannot tell (not an UPDATE, or the row came without its text: Realtime leaves out a value
 * that did not change and was stored out of line, or one too large to send): then ask the API.
 * @param {any} payload supabase-js's RealtimePostgresChangesPayload
 * @param {Story} known
 * @returns {Story | null}
 */
export function storyFromRow(payload, known) {
  const row = payload?.new;
  if (payload?.eventType !== 'UPDATE' || !row || typeof row.status !== 'string') return null;
  if (!('content' in row) && row.status !== 'pending') return null;
  return {
    ...known,
    title: row.title ?? known.title,
    status: row.status,
    content: row.content ?? null,
    words: row.words ?? null,
    completedAt: row.completed_at ?? null,
  };
}

/**
 * Whether `next` may replace `current` in a reader: not when it is an older view of the same
 * attempt's text (an API answer that left before a Realtime change arrived). Within an attempt
 * the text is only appended to, so a shorter prefix of the text shown is stale.
 * @param {Story} next
 * @param {Story} current
 */
export function isNewerStory(next, current) {
  if (isStoryFinished(current.status)) return false;
  if (next.status !== 'writing' || current.status !== 'writing') return true;
  const before = current.content ?? '';
  const after = next.content ?? '';
  return !(after.length < before.length && before.startsWith(after)) && after !== before;
}
