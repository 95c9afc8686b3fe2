// @ts-check
/**
 * storyq-client.js: a small, dependency-free client for the storyq HTTP API.
 *
 * Plain ES module, typed with JSDoc; works in browsers and in Node >= 18 (global fetch).
 * It speaks the contract of DESIGN.md: camelCase JSON, problem+json errors, Bearer tokens.
 *
 *   import { StoryqClient } from './storyq-client.js';
 *   const client = new StoryqClient({ baseUrl: '', getToken: () => token });
 *   const accepted = await client.generate({ prompt: 'a lighthouse keeper who collects storms' });
 *   const job = await client.watchJob(accepted.jobId, (job) => render(job));
 *   if (job.status === 'completed') show(await client.getStory(job.storyId));
 *
 * watchJob polls at an interval derived from the job (queue position and ETA while it waits,
 * progress while it runs), backs off on network errors and 5xx, honours Retry-After on 429 and
 * 503, and stops at a terminal status. subscribe() does the same, but is woken at once by
 * Supabase Realtime (postgres_changes on story_jobs) when a supabase-js client is given.
 */

/** @typedef {'pending' | 'processing' | 'completed' | 'failed' | 'cancelled'} JobStatus */

/**
 * @typedef {object} WaitTime
 * @property {number} position 0-based rank among the waiting jobs
 * @property {number} [queueLength]
 * @property {number} [activeJobs]
 * @property {number} estimatedMinutes
 */

/**
 * @typedef {object} Job
 * @property {string} jobId
 * @property {string} storyId
 * @property {string | null} [title]
 * @property {JobStatus} status
 * @property {number} attempts
 * @property {number} maxAttempts
 * @property {string} createdAt
 * @property {string | null} startedAt
 * @property {string | null} finishedAt
 * @property {WaitTime | null} [waitTime] pending only (null when the queue could not say)
 * @property {{words: number, percent: number}} [progress] processing only
 * @property {{generationTime: number | null, quality?: unknown, words: number | null}} [result]
 * @property {{code: string, message: string}} [error] failed only
 * @property {boolean | null} [refunded] failed and cancelled
 */

/**
 * @typedef {object} GenerateRequest
 * @property {string} prompt 1-4000 characters
 * @property {string} [title]
 * @property {string} [genre]
 * @property {string} [language] BCP 47 tag, default "en"
 * @property {number} [targetWords] 100-5000, default 1200
 */

/**
 * @typedef {object} GenerateAccepted
 * @property {string} jobId
 * @property {string} storyId
 * @property {'queued'} status
 * @property {string} message
 * @property {WaitTime | null} estimatedWaitTime
 * @property {number} [creditsRemaining]
 * @property {boolean} [replayed] true when the server answered a retried Idempotency-Key
 */

/**
 * @typedef {object} Story
 * @property {string} storyId
 * @property {string | null} jobId
 * @property {string | null} title
 * @property {string} prompt
 * @property {string | null} [genre]
 * @property {string} [language]
 * @property {number} [targetWords]
 * @property {'pending' | 'ready' | 'failed' | 'cancelled'} status
 * @property {string | null} content
 * @property {number | null} words
 * @property {string} createdAt
 * @property {string | null} completedAt
 */

/** @typedef {{jobs: Job[], nextCursor: string | null}} JobPage */
/** @typedef {{userId: string, credits: number, isAdmin?: boolean}} Me */

/**
 * @typedef {object} Problem RFC 9457 problem details, as the API writes them
 * @property {string} [type]
 * @property {string} [title]
 * @property {number} [status]
 * @property {string} [detail]
 * @property {string} [code]
 * @property {{loc: (string | number)[], msg: string}[]} [errors] 422 only
 */

/**
 * @typedef {object} RealtimeChannel the part of supabase-js's RealtimeChannel used here
 * @property {(event: string, filter: object, callback: (payload: any) => void) => RealtimeChannel} on
 * @property {(callback?: (status: string, err?: unknown) => void) => RealtimeChannel} subscribe
 */

/**
 * @typedef {object} SupabaseLike the part of a supabase-js client used here
 * @property {(name: string, options?: object) => RealtimeChannel} channel
 * @property {(channel: RealtimeChannel) => unknown} removeChannel
 */

/**
 * @typedef {object} WatchOptions
 * @property {AbortSignal} [signal] abort to stop watching (the promise then rejects with an AbortError)
 * @property {number} [minIntervalMs] floor of any wait between polls (default 2000)
 * @property {number} [maxIntervalMs] ceiling of any wait between polls (default 15000)
 * @property {number} [maxBackoffMs] ceiling of the backoff after errors (default 60000)
 * @property {(error: unknown, delayMs: number) => void} [onRetry] told of each transient error
 * @property {Job} [initial] a view of the job the caller already has (skips nothing: the
 *   first poll still happens at once, this only seeds the interval)
 */

export const TERMINAL_STATUSES = Object.freeze(['completed', 'failed', 'cancelled']);

/** @param {string | undefined | null} status */
export function isTerminal(status) {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

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

/** @param {number} value @param {number} low @param {number} high */
function clamp(value, low, high) {
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

/** @param {AbortSignal | undefined} signal */
function abortError(signal) {
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
function sleep(ms, signal, wake = null) {
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
function jitter(ms) {
  return Math.round(ms * (0.9 + Math.random() * 0.2));
}

/**
 * A one-shot "wake up" that can be re-armed: realtime events resolve it, sleep() races it.
 * @returns {{promise: Promise<void>, fire: () => void, rearm: () => void}}
 */
function wakeSignal() {
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

/**
 * @typedef {object} ClientOptions
 * @property {string} [baseUrl] API origin (and prefix), '' for the page's own origin
 * @property {() => (string | null | undefined | Promise<string | null | undefined>)} getToken
 *   the current access token (a Supabase session's access_token, or a dev token)
 * @property {typeof fetch} [fetch] fetch implementation (default: global fetch)
 * @property {SupabaseLike | null} [supabase] a supabase-js client, for subscribe()
 */

export class StoryqClient {
  /** @param {ClientOptions} options */
  constructor({ baseUrl = '', getToken, fetch: fetchImpl, supabase = null }) {
    if (typeof getToken !== 'function') throw new TypeError('getToken must be a function');
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.getToken = getToken;
    this.fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
    this.supabase = supabase;
  }

  /**
   * One API call. Resolves with the parsed JSON body (null for an empty body); rejects with
   * a StoryqError for any non-2xx answer or network failure.
   * @param {string} method
   * @param {string} path
   * @param {{body?: unknown, headers?: Record<string, string>, signal?: AbortSignal,
   *   auth?: boolean}} [options]
   * @returns {Promise<{data: any, response: Response}>}
   */
  async request(method, path, { body, headers = {}, signal, auth = true } = {}) {
    /** @type {Record<string, string>} */
    const all = { Accept: 'application/json, application/problem+json', ...headers };
    if (auth) {
      const token = await this.getToken();
      if (token) all.Authorization = `Bearer ${token}`;
    }
    if (body !== undefined) all['Content-Type'] = 'application/json';
    /** @type {Response} */
    let response;
    try {
      response = await this.fetch(`${this.baseUrl}${path}`, {
        method,
        headers: all,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new StoryqError(
        { status: 0, code: 'network_error', title: 'Network error',
          detail: 'the storyq API could not be reached' },
        { cause: error },
      );
    }
    const text = await response.text();
    /** @type {any} */
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const problem = data && typeof data === 'object' ? data : {};
      throw new StoryqError(
        { title: response.statusText, ...problem, status: response.status },
        { retryAfterMs: parseRetryAfter(response.headers.get('Retry-After')),
          headers: response.headers },
      );
    }
    return { data, response };
  }

  /**
   * POST /api/generate. Pass the same `idempotencyKey` when retrying the same click (the
   * server then answers the first job and debits once); a new click needs a new key.
   * @param {GenerateRequest} body
   * @param {{idempotencyKey?: string, signal?: AbortSignal}} [options]
   * @returns {Promise<GenerateAccepted>}
   */
  async generate(body, { idempotencyKey = newIdempotencyKey(), signal } = {}) {
    const { data, response } = await this.request('POST', '/api/generate', {
      body,
      headers: { 'Idempotency-Key': idempotencyKey },
      signal,
    });
    return { ...data, replayed: response.headers.get('Idempotent-Replayed') === 'true' };
  }

  /**
   * GET /api/job/{id}
   * @param {string} jobId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Job>}
   */
  async getJob(jobId, { signal } = {}) {
    return (await this.request('GET', `/api/job/${encodeURIComponent(jobId)}`, { signal })).data;
  }

  /**
   * GET /api/story/{id}
   * @param {string} storyId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Story>}
   */
  async getStory(storyId, { signal } = {}) {
    return (await this.request('GET', `/api/story/${encodeURIComponent(storyId)}`, { signal })).data;
  }

  /**
   * GET /api/jobs: the caller's jobs, newest first; pass `nextCursor` back as `cursor`.
   * @param {{status?: JobStatus, limit?: number, cursor?: string | null, signal?: AbortSignal}} [options]
   * @returns {Promise<JobPage>}
   */
  async listJobs({ status, limit, cursor, signal } = {}) {
    const query = new URLSearchParams();
    if (status) query.set('status', status);
    if (limit) query.set('limit', String(limit));
    if (cursor) query.set('cursor', cursor);
    const qs = query.toString();
    return (await this.request('GET', `/api/jobs${qs ? `?${qs}` : ''}`, { signal })).data;
  }

  /**
   * DELETE /api/job/{id}: cancel a pending job (refunded). A 409 (`job_not_cancellable`)
   * means it already started or finished.
   * @param {string} jobId
   * @returns {Promise<Job>}
   */
  async cancel(jobId) {
    return (await this.request('DELETE', `/api/job/${encodeURIComponent(jobId)}`)).data;
  }

  /**
   * GET /api/me, or null where the deployment has no such endpoint (404).
   * @returns {Promise<Me | null>}
   */
  async me() {
    try {
      return (await this.request('GET', '/api/me')).data;
    } catch (error) {
      if (error instanceof StoryqError && error.status === 404) return null;
      throw error;
    }
  }

  /** GET /api/health (no token needed). */
  async health() {
    return (await this.request('GET', '/api/health', { auth: false })).data;
  }

  /**
   * Poll a job until it reaches a terminal status; `onUpdate` gets every view (the first at
   * once). Resolves with the terminal job. Rejects with a StoryqError that is not transient
   * (401, 404, ...), or with an AbortError when `signal` aborts.
   * @param {string} jobId
   * @param {(job: Job) => void} onUpdate
   * @param {WatchOptions} [options]
   * @returns {Promise<Job>}
   */
  watchJob(jobId, onUpdate, options = {}) {
    return this.#poll(jobId, onUpdate, options, null);
  }

  /**
   * Like watchJob, but woken at once by Supabase Realtime when `supabase` (here or in the
   * constructor) is a supabase-js client: it subscribes to postgres_changes on
   * public.story_jobs filtered by id (RLS lets a user see only their own rows) and re-reads
   * the job from the API on every change. The row change is only a trigger: the API's view
   * (position, ETA, progress) stays the one truth. While the channel is up, the fallback
   * poll slows down to refresh the queue position only; if the channel fails, polling goes on
   * at the usual rate. Without a supabase client this is watchJob.
   * @param {string} jobId
   * @param {(job: Job) => void} onUpdate
   * @param {WatchOptions & {supabase?: SupabaseLike | null, realtimeIntervalMs?: number}} [options]
   * @returns {Promise<Job>}
   */
  async subscribe(jobId, onUpdate, options = {}) {
    const supabase = options.supabase ?? this.supabase;
    if (!supabase || typeof supabase.channel !== 'function') {
      return this.watchJob(jobId, onUpdate, options);
    }
    const wake = wakeSignal();
    const realtime = { up: false, intervalMs: options.realtimeIntervalMs ?? 15000, wake };
    const channel = supabase
      .channel(`storyq-job-${jobId}`)
      .on(
        'postgres_changes',
        { event: '*', schema: 'public', table: 'story_jobs', filter: `id=eq.${jobId}` },
        () => wake.fire(),
      )
      .subscribe((status) => {
        realtime.up = status === 'SUBSCRIBED';
        if (!realtime.up) wake.fire(); // fall back at once: re-poll, then at the usual rate
      });
    try {
      return await this.#poll(jobId, onUpdate, options, realtime);
    } finally {
      try {
        supabase.removeChannel(channel);
      } catch {
        // already gone
      }
    }
  }

  /**
   * @param {string} jobId
   * @param {(job: Job) => void} onUpdate
   * @param {WatchOptions} options
   * @param {{up: boolean, intervalMs: number, wake: ReturnType<typeof wakeSignal>} | null} realtime
   * @returns {Promise<Job>}
   */
  async #poll(jobId, onUpdate, options, realtime) {
    const { signal, maxBackoffMs = 60000, onRetry } = options;
    const minIntervalMs = options.minIntervalMs ?? 2000;
    const maxIntervalMs = Math.max(minIntervalMs, options.maxIntervalMs ?? 15000);
    let failures = 0;
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      /** @type {number} */
      let delay;
      realtime?.wake.rearm();
      try {
        const { data: job, response } = await this.request(
          'GET', `/api/job/${encodeURIComponent(jobId)}`, { signal },
        );
        failures = 0;
        onUpdate(job);
        const next = pollDelay(job, { minMs: minIntervalMs, maxMs: maxIntervalMs });
        if (next === null) return job;
        // A server may suggest the interval itself.
        const suggested = parseRetryAfter(response.headers.get('Retry-After'));
        delay = suggested !== null ? clamp(suggested, minIntervalMs, maxBackoffMs) : jitter(next);
        if (realtime?.up) delay = Math.max(delay, realtime.intervalMs);
      } catch (error) {
        if (signal?.aborted) throw abortError(signal);
        if (!(error instanceof StoryqError) || !error.transient) throw error;
        failures += 1;
        const backoff = Math.min(maxBackoffMs, minIntervalMs * 2 ** failures);
        delay = error.retryAfterMs !== null
          ? Math.min(Math.max(error.retryAfterMs, minIntervalMs), maxBackoffMs * 5)
          : jitter(backoff);
        onRetry?.(error, delay);
      }
      await sleep(delay, signal, realtime ? realtime.wake : null);
    }
  }
}

export default StoryqClient;
