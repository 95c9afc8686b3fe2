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
 * watchJob polls when the API's Retry-After says (else at an interval derived from the job:
 * queue position and ETA while it waits, progress while it runs), backs off on network errors
 * and 5xx, honours Retry-After on 429 and 503, and stops at a terminal status. subscribe() does
 * the same, but is woken at once by Supabase Realtime (postgres_changes on story_jobs) when the
 * job's status changes, and takes progress from the row changes, when a supabase-js client is
 * given. watchStory() follows a story's text while it is written: from Realtime's changes of
 * its row (no request), else re-read at the pace the caller gives (its job's polls).
 * The `admin*` methods speak to the operator's endpoints (admin tokens only; 403 otherwise).
 *
 * This file is the public entry point: it holds the API's types and re-exports the code,
 * which lives in storyq-http.js (StoryqError, Retry-After, Idempotency-Key),
 * storyq-polling.js (poll intervals, sleep, the Realtime wake-up) and storyq-api.js
 * (StoryqClient: the API calls and the watchers). Import from here, not from those.
 */

/** @typedef {'pending' | 'processing' | 'completed' | 'failed' | 'cancelled'} JobStatus */

/**
 * @typedef {object} WaitTime
 * @property {number} position 0-based rank among the waiting jobs
 * @property {number} [queueLength]
 * @property {number} [activeJobs]
 * @property {number} estimatedMinutes
 * @property {boolean} [mayBeOvertaken] a job queued later can still be placed ahead (the queue
 *   is fair-share: users with fewer jobs waiting or of a higher tier); false once next in line
 * @property {boolean} [atUserCap] the user already runs as many stories as their plan allows:
 *   this one also waits for one of them to end
 * @property {boolean} [heldByUserCap] set aside by a claim for that reason
 * @property {number} [ownJobsAhead] the user's own held jobs ahead of this one
 */

/**
 * @typedef {object} JobResult what a completed job's generation came to
 * @property {number | null} generationTime seconds
 * @property {string | null} quality high, medium or low: a length-and-ending check, not a
 *   judgement of the writing (see the API's OpenAPI description)
 * @property {number | null} words
 * @property {{promptTokens: number, completionTokens: number, costUsd: number}} [usage] what the
 *   story cost in LLM tokens and US dollars; absent when no attempt recorded it
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
 * @property {JobResult} [result] completed only
 * @property {{code: string, message: string}} [error] failed only
 * @property {boolean | null} [refunded] failed and cancelled
 * @property {boolean} [cancelRequested] true from a DELETE of the running job on (it is being
 *   stopped; it ends `cancelled`, or `completed` if it finished first)
 * @property {'user' | 'admin' | 'expired' | null} [cancelReason] cancelled only
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
 * @property {'pending' | 'writing' | 'ready' | 'failed' | 'cancelled'} status `writing`: content
 *   is the text so far (only appended to, unless a retry starts it afresh: `pending` again);
 *   `failed` and `cancelled` keep the text written before
 * @property {string | null} content
 * @property {number | null} words
 * @property {string} createdAt
 * @property {string | null} completedAt
 */

/** @typedef {{jobs: Job[], nextCursor: string | null}} JobPage */
/**
 * @typedef {{userId: string, credits: number, isAdmin?: boolean}} Me `isAdmin`: the token may
 *   use the admin endpoints (the `admin*` methods); absent where the API predates it
 */

/**
 * @typedef {object} ProviderPause the provider refused work for load: no claims until `until`,
 *   then one probe at a time until the provider answers one
 * @property {string} until
 * @property {string | null} since
 * @property {number} strikes pauses in a row whose probe was refused too
 * @property {string} reason the error code that set it (rate_limited, upstream_error)
 * @property {boolean} probing a probe is out
 */

/**
 * @typedef {object} TierLoad waiting and running jobs of one plan tier (the tier at enqueue)
 * @property {string} tier
 * @property {number} pending
 * @property {number} processing
 */

/**
 * @typedef {object} QueueStats GET /api/admin/queue. waiting/active/delayed are Redis's, or
 *   Postgres's pending/processing counts when Redis cannot be reached (`source`)
 * @property {number} waiting
 * @property {number} active
 * @property {number} delayed waiting for a retry's backoff
 * @property {number} completed
 * @property {number} failed
 * @property {number} cancelled
 * @property {number} maxActive
 * @property {number} avgGenerationSeconds
 * @property {string | null} oldestPendingAt
 * @property {'redis' | 'postgres'} source
 * @property {number} promptTokensToday since midnight UTC
 * @property {number} completionTokensToday
 * @property {number} costUsdToday US dollars, at the workers' configured prices
 * @property {TierLoad[]} byTier
 * @property {ProviderPause | null} providerPause
 * @property {number} heldByUserCap waiting jobs set aside because their user is at their
 *   plan's running cap
 */

/**
 * @typedef {object} AdminJob a job in the operator's job browser (any user's); every field is
 *   there, null when it does not apply
 * @property {string} jobId
 * @property {string} storyId
 * @property {string} userId
 * @property {string | null} title
 * @property {JobStatus} status
 * @property {string | null} tier the plan tier at enqueue; null: enqueued before tiers
 * @property {number} priority
 * @property {number} attempts
 * @property {number} maxAttempts
 * @property {string} createdAt
 * @property {string | null} startedAt
 * @property {string | null} finishedAt
 * @property {string | null} errorCode the last failed attempt's error
 * @property {boolean} refunded
 * @property {boolean} cancelRequested
 * @property {'user' | 'admin' | 'expired' | null} cancelReason
 * @property {number | null} words the story's words so far
 */

/** @typedef {{jobs: AdminJob[], nextCursor: string | null}} AdminJobPage */

/**
 * @typedef {object} AdminJobFilters what GET /api/admin/jobs narrows to (all must hold)
 * @property {JobStatus | JobStatus[]} [status] one status, or any of several
 * @property {string} [userId]
 * @property {string} [tier] a plan tier as at enqueue; '(none)': before tiers
 * @property {string | Date} [createdAfter] inclusive; RFC 3339 with an offset, or a Date
 * @property {string | Date} [createdBefore] exclusive
 * @property {number} [limit] 1-100 (the API's default: 25)
 * @property {string | null} [cursor] the previous page's `nextCursor`
 * @property {AbortSignal} [signal]
 */

/**
 * @typedef {'completed' | 'retrying' | 'failed' | 'released' | 'cancelled' | 'lost'} AttemptOutcome
 *   retrying: it failed and the job ran again; lost: its worker went silent; released: given
 *   back unused by its worker
 */

/**
 * @typedef {object} Attempt one attempt of a job
 * @property {number} attempt 1 to maxAttempts (from 1 again after an admin retry)
 * @property {number} fence the attempt's fencing token
 * @property {string} startedAt
 * @property {string | null} endedAt null while it runs
 * @property {AttemptOutcome | null} outcome null while it runs
 * @property {string | null} errorCode
 * @property {string | null} errorMessage
 * @property {string | null} model
 * @property {number} promptTokens
 * @property {number} completionTokens
 * @property {number} costUsd
 * @property {boolean} usageEstimated the worker counted the tokens itself
 * @property {string | null} usageRecordedAt null: no usage recorded (the zeros mean unknown)
 */

/**
 * @typedef {AdminJob & {
 *   prompt: string, genre: string | null, language: string, targetWords: number,
 *   errorMessage: string | null, heartbeatAt: string | null, nextAttemptAt: string,
 *   storyStatus: Story['status'], content: string | null, attemptHistory: Attempt[],
 * }} AdminJobDetail GET /api/admin/job/{id}: the job, its request, its story so far (`content`,
 *   also while it is written) and every attempt, oldest first
 */

/** @typedef {{cancelled: number, jobIds: string[]}} EmptyResult */
/** @typedef {{status: 'completed' | 'failed' | 'cancelled', deleted: number}} CleanResult */
/** @typedef {{userId: string, credits: number}} CreditBalance the user's balance after a grant */

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
 * @property {number} [maxIntervalMs] ceiling of any wait between polls. Unset, the client
 *   follows the API's Retry-After (2-30 s, up to 60 s) and uses 15000 for its own estimate
 *   when the API suggests nothing; set, it caps both
 * @property {number} [maxBackoffMs] ceiling of the backoff after errors (default 60000)
 * @property {(error: unknown, delayMs: number) => void} [onRetry] told of each transient error
 * @property {(job: Job) => void} [onPoll] told of each view the API answered (not of the
 *   progress Realtime brings): the pace at which the job is polled, for a story's reader
 * @property {Job} [initial] a view of the job the caller already has (skips nothing: the
 *   first poll still happens at once, this only seeds the interval)
 */

/** @typedef {import('./storyq-api.js').ClientOptions} ClientOptions */

export {
  TERMINAL_STATUSES, isTerminal, isStoryFinished, pollDelay, nextPollMs,
} from './storyq-polling.js';
export { StoryqError, parseRetryAfter, newIdempotencyKey } from './storyq-http.js';
export { StoryqClient } from './storyq-api.js';
export { StoryqClient as default } from './storyq-api.js';
