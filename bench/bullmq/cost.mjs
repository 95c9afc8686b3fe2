// @ts-check
/**
 * What BullMQ (the npm package, pinned in package.json) sends to Redis, for bench/cost.py.
 *
 *   node bench/bullmq/cost.mjs --port PORT --mode job|job-with-client|idle --seconds S
 *
 * Talks to a private redis-server on 127.0.0.1:PORT that nothing else uses. The Worker and the
 * Queue start and settle first (in job modes, one instant warm-up job caches BullMQ's scripts,
 * as a long-running deployment has them); then CONFIG RESETSTAT, the measured run, and INFO
 * commandstats, printed as one JSON line on stdout: calls and failed calls per command, raw
 * (bench/billing.py applies Upstash's rule).
 *
 * - job: a Queue adds one job; a Worker at concurrency 5 (BullMQ's defaults otherwise: 30 s
 *   lock renewed every 15 s, stalled check every 30 s, 5 s drain delay) runs it, its processor
 *   waiting S seconds; counted from the add to the `completed` event.
 * - job-with-client: the same, and a status poller following the reference web client's
 *   schedule (pollDelay and jitter imported from web/storyq-polling.js, 2-15 s bounds), each
 *   poll what a BullMQ-backed GET /job/{id} needs at least: Job.fromId and job.getState().
 *   The processor reports no progress (that would cost BullMQ commands), so the poller takes
 *   the elapsed share of S as the percent, as storyq's generator reports it: the same number
 *   of polls as storyq's client makes, each a BullMQ read.
 * - idle: a Worker with nothing to do for S seconds.
 */

import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import IORedis from 'ioredis';
import { Job, Queue, Worker } from 'bullmq';
import { jitter, pollDelay } from '../../web/storyq-polling.js';

const QUEUE = 'story';
const CONCURRENCY = 5;
const SETTLE_MS = 1500;

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    mode: { type: 'string', default: 'job' },
    seconds: { type: 'string', default: '270' },
  },
});
const port = Number(values.port);
const seconds = Number(values.seconds);
const mode = String(values.mode);
if (!port || !(seconds > 0) || !['job', 'job-with-client', 'idle'].includes(mode)) {
  throw new Error('usage: cost.mjs --port PORT --mode job|job-with-client|idle --seconds S');
}

const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
const admin = new IORedis(connection);

/** Calls and failed calls per command, as INFO commandstats says. */
async function commandstats() {
  const text = /** @type {string} */ (await admin.info('commandstats'));
  /** @type {Record<string, number>} */
  const calls = {};
  /** @type {Record<string, number>} */
  const failed = {};
  for (const line of text.split('\r\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+),.*failed_calls=(\d+)/.exec(line);
    if (!match) continue;
    calls[match[1]] = Number(match[2]);
    if (Number(match[3])) failed[match[1]] = Number(match[3]);
  }
  return { calls, failed };
}

/** The view the reference client would get for the job (its status and progress). */
async function view(queue, jobId, startedAt) {
  const job = await Job.fromId(queue, jobId);
  const state = job ? await job.getState() : 'unknown';
  if (state === 'completed' || state === 'failed') return { status: state };
  if (state === 'active') {
    const begun = job?.processedOn ?? startedAt;
    const percent = Math.min(99, Math.floor(((Date.now() - begun) / (seconds * 1000)) * 100));
    return {
      status: 'processing',
      startedAt: new Date(begun).toISOString(),
      progress: { percent },
    };
  }
  return { status: 'pending', waitTime: { position: 0, estimatedMinutes: 0 } };
}

/** Polls as web/storyq-api.js's watchJob does (defaults, no Realtime) until terminal. */
async function poll(queue, jobId) {
  const started = Date.now();
  let polls = 0;
  for (;;) {
    const job = await view(queue, jobId, started);
    polls += 1;
    const next = pollDelay(/** @type {any} */ (job), { minMs: 2000, maxMs: 15000 });
    if (next === null) return polls;
    await sleep(jitter(next));
  }
}

async function runJob(withClient) {
  const queue = new Queue(QUEUE, { connection });
  const worker = new Worker(
    QUEUE,
    async (job) => (job.name === 'warm-up' ? undefined : sleep(seconds * 1000)),
    { connection, concurrency: CONCURRENCY },
  );
  await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()]);
  await finished(worker, () => queue.add('warm-up', {}));
  await sleep(SETTLE_MS);
  await admin.config('RESETSTAT');
  const begun = Date.now();
  let polling = Promise.resolve(0);
  await finished(worker, async () => {
    const job = await queue.add('story', { prompt: "A clockmaker's last commission." });
    if (withClient) polling = poll(queue, String(job.id));
    return job;
  });
  const polls = await polling;
  const stats = await commandstats();
  const wallSeconds = (Date.now() - begun) / 1000;
  await worker.close();
  await queue.close();
  return { ...stats, wall_seconds: wallSeconds, polls };
}

/** Adds a job with `add` and waits for the worker to complete it. */
async function finished(worker, add) {
  const completed = new Set();
  let wanted = null;
  let settle = (_value) => {};
  const done = new Promise((resolve, reject) => {
    settle = resolve;
    worker.once('failed', (_job, error) => reject(error));
  });
  const onCompleted = (job) => {
    completed.add(job.id);
    if (completed.has(wanted)) settle(job);
  };
  worker.on('completed', onCompleted);
  wanted = (await add()).id;
  if (completed.has(wanted)) settle(null);
  await done;
  worker.off('completed', onCompleted);
}

async function runIdle() {
  const worker = new Worker(QUEUE, async () => undefined, { connection, concurrency: CONCURRENCY });
  await worker.waitUntilReady();
  await sleep(SETTLE_MS);
  await admin.config('RESETSTAT');
  const begun = Date.now();
  await sleep(seconds * 1000);
  const stats = await commandstats();
  const wallSeconds = (Date.now() - begun) / 1000;
  await worker.close();
  return { ...stats, wall_seconds: wallSeconds };
}

const { version } = JSON.parse(
  await import('node:fs').then((fs) =>
    fs.promises.readFile(new URL('../../node_modules/bullmq/package.json', import.meta.url), 'utf8'),
  ),
);
const result = mode === 'idle' ? await runIdle() : await runJob(mode === 'job-with-client');
await admin.quit();
process.stdout.write(
  `${JSON.stringify({ mode, seconds, concurrency: CONCURRENCY, bullmq: version, ...result })}\n`,
);
