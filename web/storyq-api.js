// @ts-check
/**
 * storyq-api.js: StoryqClient, the API calls (request, generate, jobs, stories, me, and the
 * operator's `admin*` calls) and the watchers (watchJob and subscribe for a job, watchStory for the text of a story). Import it from storyq-client.js, the public entry point.
 */

import { StoryqError, parseRetryAfter, newIdempotencyKey } from './storyq-http.js';
import {
  DEFAULT_MIN_INTERVAL_MS, DEFAULT_REALTIME_INTERVAL_MS, abortError, isNewerStory,
  isStoryFinished, jitter, nextPollMs, rowChange, sleep, storyFromRow, wakeSignal, withWords,
} from './storyq-polling.js';

/** @typedef {import('./storyq-client.js').Job} Job */
/** @typedef {import('./storyq-client.js').JobStatus} JobStatus */
/** @typedef {import('./storyq-client.js').JobPage} JobPage */
/** @typedef {import('./storyq-client.js').GenerateRequest} GenerateRequest */
/** @typedef {import('./storyq-client.js').GenerateAccepted} GenerateAccepted */
/** @typedef {import('./storyq-client.js').Story} Story */
/** @typedef {import('./storyq-client.js').Me} Me */
/** @typedef {import('./storyq-client.js').SupabaseLike} SupabaseLike */
/** @typedef {import('./storyq-client.js').WatchOptions} WatchOptions */
/** @typedef {import('./storyq-client.js').QueueStats} QueueStats */
/** @typedef {import('./storyq-client.js').AdminJobFilters} AdminJobFilters */
/** @typedef {import('./storyq-client.js').AdminJobPage} AdminJobPage */
/** @typedef {import('./storyq-client.js').AdminJobDetail} AdminJobDetail */
/** @typedef {import('./storyq-client.js').EmptyResult} EmptyResult */
/** @typedef {import('./storyq-client.js').CleanResult} CleanResult */
/** @typedef {import('./storyq-client.js').CreditBalance} CreditBalance */

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
   * DELETE /api/job/{id}: cancel a job. A waiting one is cancelled and refunded at once (the
   * answer's status is `cancelled`). A running one is asked to stop (202: the answer's status
   * is still `processing`, with `cancelRequested: true`): its generation stops within seconds
   * and the job ends `cancelled` and refunded, keeping the text written so far; keep watching
   * it to see that. Asking again answers the same, with no second refund. A 409
   * (`job_not_cancellable`) means it completed or failed first.
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

  // The operator's endpoints: admin tokens only (any other valid token gets a 403 StoryqError).

  /**
   * GET /api/admin/queue: counts by status and tier, mean generation time, the oldest waiting
   * job, the provider's pause, today's tokens and cost.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<QueueStats>}
   */
  async adminQueue({ signal } = {}) {
    return (await this.request('GET', '/api/admin/queue', { signal })).data;
  }

  /**
   * GET /api/admin/jobs: every user's jobs, newest first, narrowed by `filters`; pass
   * `nextCursor` back as `cursor` for the next page (null on the last).
   * @param {AdminJobFilters} [filters]
   * @returns {Promise<AdminJobPage>}
   */
  async adminJobs({ signal, ...filters } = {}) {
    const qs = adminJobsQuery(filters);
    return (await this.request('GET', `/api/admin/jobs${qs ? `?${qs}` : ''}`, { signal })).data;
  }

  /**
   * GET /api/admin/job/{id}: any user's job with its request, its story so far and every
   * attempt (times, outcome, error, model, tokens, cost), oldest first.
   * @param {string} jobId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<AdminJobDetail>}
   */
  async adminJob(jobId, { signal } = {}) {
    return (await this.request('GET', `/api/admin/job/${encodeURIComponent(jobId)}`, { signal })).data;
  }

  /**
   * POST /api/admin/job/{id}/retry: a failed job back in the queue (charged nothing again);
   * the answer is the job, pending, with its `waitTime`. 409 `job_not_retryable` unless failed.
   * @param {string} jobId
   * @returns {Promise<Job>}
   */
  async adminRetry(jobId) {
    return (await this.request('POST', `/api/admin/job/${encodeURIComponent(jobId)}/retry`)).data;
  }

  /**
   * POST /api/admin/job/{id}/cancel: cancel any user's job as cancel() does its own
   * (`cancelReason: "admin"`): a waiting one comes back cancelled and refunded, a running one
   * `processing` with `cancelRequested: true`. 409 `job_not_cancellable` once it completed or failed.
   * @param {string} jobId
   * @returns {Promise<Job>}
   */
  async adminCancel(jobId) {
    return (await this.request('POST', `/api/admin/job/${encodeURIComponent(jobId)}/cancel`)).data;
  }

  /**
   * POST /api/admin/queue/empty: cancel and refund every waiting job.
   * @returns {Promise<EmptyResult>}
   */
  async adminEmpty() {
    return (await this.request('POST', '/api/admin/queue/empty')).data;
  }

  /**
   * POST /api/admin/queue/clean: delete the job rows of one finished status older than an age
   * (their stories stay).
   * @param {{status: 'completed' | 'failed' | 'cancelled', olderThanSeconds?: number}} body
   * @returns {Promise<CleanResult>}
   */
  async adminClean({ status, olderThanSeconds = 0 }) {
    return (await this.request('POST', '/api/admin/queue/clean', {
      body: { status, olderThanSeconds },
    })).data;
  }

  /**
   * POST /api/admin/credits: grant credits to a user (1 to 1,000,000); the new balance.
   * 404 `user_not_found` for an id that is no user.
   * @param {{userId: string, amount: number}} body
   * @returns {Promise<CreditBalance>}
   */
  async adminGrantCredits({ userId, amount }) {
    return (await this.request('POST', '/api/admin/credits', { body: { userId, amount } })).data;
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
   * Like watchJob, but woken by Supabase Realtime when `supabase` (here or in the constructor)
   * is a supabase-js client: it subscribes to postgres_changes on public.story_jobs filtered
   * by id (RLS lets a user see only their own rows). A change of the job's status (it started,
   * went back to the queue, finished) makes the watcher re-read the job from the API at once:
   * the API's view (position, ETA, result) stays the one truth. The worker's heartbeats, which
   * change the row every few seconds while it writes, cost no request: their word count goes
   * to `onUpdate` as the job's progress. While the channel is up, the fallback poll comes at
   * least `realtimeIntervalMs` (30 s) apart, to refresh the queue position; if the channel
   * fails, polling goes on at the usual rate. Without a supabase client this is watchJob.
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
    /** @type {Realtime} */
    const realtime = {
      up: false,
      intervalMs: options.realtimeIntervalMs ?? DEFAULT_REALTIME_INTERVAL_MS,
      wake,
      job: null,
      wokenFor: null,
    };
    const channel = supabase
      .channel(`storyq-job-${jobId}`)
      .on(
        'postgres_changes',
        { event: '*', schema: 'public', table: 'story_jobs', filter: `id=eq.${jobId}` },
        (payload) => {
          const change = rowChange(payload, realtime.job?.status);
          if (change.wake) {
            realtime.wokenFor = payload?.new?.status ?? null;
            wake.fire();
          } else if (change.words !== null && realtime.job) {
            const job = withWords(realtime.job, change.words);
            if (job !== realtime.job) {
              realtime.job = job;
              onUpdate(job);
            }
          }
        },
      )
      .subscribe((status) => {
        realtime.up = status === 'SUBSCRIBED';
        if (!realtime.up) {
          realtime.wokenFor = null;
          wake.fire(); // fall back at once: re-poll, then at the usual rate
        }
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
   * Follow a story while it is written, until it is ready, failed or cancelled: `onUpdate`
   * gets each newer view of it (the first at once), and the promise resolves with the last.
   * With a supabase-js client (here or in the constructor) it subscribes to postgres_changes
   * on public.stories filtered by id: each change of the row carries its text, so the text
   * grows with no request (one read catches up when the channel joins, and one when a change
   * comes without its text). Without Realtime, or while its channel is down, the story is
   * re-read from the API each time `nextRead()` resolves: pass one that resolves when the
   * story's job is polled (the page does), so the text costs no polls of its own pace; the
   * default waits `intervalMs` (5 s). Every read is billed, so never poll the text faster.
   * @param {string} storyId
   * @param {(story: Story) => void} onUpdate
   * @param {{signal?: AbortSignal, supabase?: SupabaseLike | null, initial?: Story,
   *   nextRead?: (story: Story) => Promise<unknown>, intervalMs?: number}} [options]
   * @returns {Promise<Story>}
   */
  async watchStory(storyId, onUpdate, options = {}) {
    const { signal } = options;
    const supabase = options.supabase ?? this.supabase;
    const nextRead = options.nextRead
      ?? (() => sleep(options.intervalMs ?? DEFAULT_STORY_INTERVAL_MS, signal));
    let story = options.initial ?? await this.getStory(storyId, { signal });
    onUpdate(story);
    if (isStoryFinished(story.status)) return story;
    /** @param {Story} next */
    const accept = (next) => {
      if (!isNewerStory(next, story)) return;
      story = next;
      onUpdate(story);
    };
    const wake = wakeSignal();
    const live = { up: false, readDue: false };
    const channel = supabase && typeof supabase.channel === 'function'
      ? supabase
        .channel(`storyq-story-${storyId}-${++channelCount}`)
        .on(
          'postgres_changes',
          { event: '*', schema: 'public', table: 'stories', filter: `id=eq.${storyId}` },
          (payload) => {
            const next = storyFromRow(payload, story);
            if (next) accept(next);
            else live.readDue = true;
            wake.fire();
          },
        )
        .subscribe((status) => {
          const up = status === 'SUBSCRIBED';
          if (up && !live.up) live.readDue = true; // what changed before the join
          live.up = up;
          wake.fire();
        })
      : null;
    const stopped = new Promise((_, reject) => {
      signal?.addEventListener('abort', () => reject(abortError(signal)), { once: true });
    });
    stopped.catch(() => {});
    let failures = 0;
    /** @type {Promise<void> | null} */
    let read = null;
    try {
      while (!isStoryFinished(story.status)) {
        if (signal?.aborted) throw abortError(signal);
        wake.rearm();
        if (live.readDue) {
          live.readDue = false;
          try {
            accept(await this.getStory(storyId, { signal }));
            failures = 0;
          } catch (error) {
            if (signal?.aborted || !(error instanceof StoryqError) || !error.transient) throw error;
            failures += 1;
            live.readDue = true;
            await sleep(error.retryAfterMs ?? jitter(Math.min(60000, 1000 * 2 ** failures)), signal);
          }
          continue;
        }
        if (live.up) {
          await Promise.race([wake.promise, stopped]);
        } else {
          // One pace at a time: a wake (the channel failing again) does not start another.
          read ??= nextRead(story).then(() => {
            read = null;
            live.readDue = !live.up;
          });
          await Promise.race([read, wake.promise, stopped]);
        }
      }
      return story;
    } finally {
      if (channel) {
        try {
          supabase?.removeChannel(channel);
        } catch {
          // already gone
        }
      }
    }
  }

  /**
   * @param {string} jobId
   * @param {(job: Job) => void} onUpdate
   * @param {WatchOptions} options
   * @param {Realtime | null} realtime
   * @returns {Promise<Job>}
   */
  async #poll(jobId, onUpdate, options, realtime) {
    const { signal, maxBackoffMs = 60000, onRetry } = options;
    const minIntervalMs = options.minIntervalMs ?? DEFAULT_MIN_INTERVAL_MS;
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
        if (realtime) {
          realtime.job = job;
          // A change that woke us while this request was under way is in this answer already.
          if (realtime.wokenFor === job.status) realtime.wake.rearm();
          realtime.wokenFor = null;
        }
        onUpdate(job);
        options.onPoll?.(job);
        const next = nextPollMs(job, {
          retryAfterMs: parseRetryAfter(response.headers.get('Retry-After')),
          minMs: minIntervalMs,
          maxMs: options.maxIntervalMs ?? null,
          realtimeMs: realtime?.up ? realtime.intervalMs : null,
        });
        if (next === null) return job;
        delay = next;
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

/**
 * The query string of GET /api/admin/jobs: `status` repeated for several, Dates as RFC 3339
 * (UTC, `Z`), nothing for unset or empty filters.
 * @param {Omit<AdminJobFilters, 'signal'>} filters
 */
function adminJobsQuery({ status, userId, tier, createdAfter, createdBefore, limit, cursor }) {
  const query = new URLSearchParams();
  for (const one of Array.isArray(status) ? status : status ? [status] : []) {
    query.append('status', one);
  }
  if (userId) query.set('userId', userId);
  if (tier) query.set('tier', tier);
  /** @param {string | Date | undefined} when */
  const instant = (when) => (when instanceof Date ? when.toISOString() : when || '');
  if (createdAfter) query.set('createdAfter', instant(createdAfter));
  if (createdBefore) query.set('createdBefore', instant(createdBefore));
  if (limit) query.set('limit', String(limit));
  if (cursor) query.set('cursor', cursor);
  return query.toString();
}

/** The wait between two reads of a story without Realtime, when the caller gives no pace. */
const DEFAULT_STORY_INTERVAL_MS = 5000;

/** Story channels get a topic of their own each time: supabase-js hands back a channel with
 * the same topic while it is still being left. */
let channelCount = 0;

/**
 * A watcher's Realtime state: whether the channel is up, the fallback interval, the wake-up,
 * the last view of the job (for progress from row changes) and the status a wake was for.
 * @typedef {object} Realtime
 * @property {boolean} up
 * @property {number} intervalMs
 * @property {ReturnType<typeof wakeSignal>} wake
 * @property {Job | null} job
 * @property {string | null} wokenFor
 */
