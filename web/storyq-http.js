// @ts-check
/**
 * storyq-http.js: the HTTP side of storyq-client.js that is not the client itself: the
 * problem+json error (StoryqError), Retry-After, and fresh Idempotency-Keys.
 * Import them from storyq-client.js, the public entry point.
 */

/** @typedef {import('./storyq-client.js').Problem} Problem */

/** An HTTP error of the API (problem+json), or a network failure (`status` 0). */
export class StoryqError extends Error {
  /**
   * @param {Problem & {status: number}} problem
   * @param {{retryAfterMs?: number | null, headers?: Headers | null, cause?: unknown}} [extra]
   */
  constructor(problem, extra = {}) {
    super(problem.detail || problem.title || `HTTP ${problem.status}`);
    this.name = 'StoryqError';
    /** HTTP status; 0 when the request never got an answer */
    this.status = problem.status;
    /** the stable `code` member ("insufficient_credits", "rate_limited", ...) */
    this.code = problem.code || (problem.status === 0 ? 'network_error' : `http_${problem.status}`);
    this.type = problem.type || 'about:blank';
    this.title = problem.title || '';
    this.detail = problem.detail || '';
    /** validation errors of a 422 */
    this.errors = problem.errors || [];
    /** milliseconds the server asked us to wait (Retry-After), or null */
    this.retryAfterMs = extra.retryAfterMs ?? null;
    this.headers = extra.headers ?? null;
    /** the whole problem document (extension members included) */
    this.problem = problem;
    if (extra.cause !== undefined) this.cause = extra.cause;
  }

  /** Worth retrying the same request later: network errors, 429, 502/503/504. */
  get transient() {
    return this.status === 0 || this.status === 429 || this.status === 502 ||
      this.status === 503 || this.status === 504;
  }
}

/**
 * Retry-After as milliseconds: delta-seconds or an HTTP-date; null when absent or unreadable.
 * @param {string | null | undefined} value
 * @param {number} [now] for tests
 */
export function parseRetryAfter(value, now = Date.now()) {
  if (value == null || value.trim() === '') return null;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - now);
}

/**
 * A fresh Idempotency-Key: crypto.randomUUID() where available (secure contexts), else a
 * version-4 UUID from crypto.getRandomValues.
 */
export function newIdempotencyKey() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
