// @ts-check
/**
 * Following unfinished jobs until they finish (woken by Supabase Realtime when configured,
 * polling otherwise), and picking them up again after a reload.
 */

import { StoryqError, isTerminal } from './storyq-client.js';
import { fail, refreshCredits } from './account.js';
import { titleOf } from './format.js';
import { removeRow, render, sortRows, upsert } from './job-list.js';
import { announce, describe } from './messages.js';
import { config, state } from './state.js';
import { forget, remember, watched } from './storage.js';

/** @typedef {import('./storyq-client.js').Job} Job */
/** @typedef {import('./storyq-client.js').JobStatus} JobStatus */

const RESUME_LIMIT = 100;

/** Watch every job still waiting or running: the API's list, and what localStorage kept. */
export async function resume() {
  if (!state.client) return;
  const ids = new Set();
  // Waiting first: a job that starts between the two requests is then in the second answer.
  for (const status of /** @type {JobStatus[]} */ (['pending', 'processing'])) {
    const page = await state.client.listJobs({ status, limit: RESUME_LIMIT });
    for (const job of page.jobs) {
      upsert(job);
      ids.add(job.jobId);
    }
  }
  sortRows();
  for (const jobId of Object.keys(watched())) ids.add(jobId);
  for (const jobId of ids) {
    const job = state.jobs.get(jobId);
    if (job && isTerminal(job.status)) {
      forget(jobId);
      continue;
    }
    watch(jobId);
  }
  if (state.watchers.size) {
    announce(`Following ${state.watchers.size} unfinished ${state.watchers.size === 1 ? 'story' : 'stories'}.`);
  }
}

/** Follow a job until it finishes (Realtime when configured, polling otherwise). @param {string} jobId */
export function watch(jobId) {
  if (!state.client || state.watchers.has(jobId)) return;
  const controller = new AbortController();
  state.watchers.set(jobId, controller);
  remember(jobId);
  const client = state.client;
  client
    .subscribe(jobId, (job) => {
      state.rowNotes.delete(jobId);
      const before = state.jobs.get(jobId)?.status;
      upsert(job, { prepend: !state.order.includes(jobId) });
      if (before && before !== job.status) announceChange(job);
    }, {
      signal: controller.signal,
      minIntervalMs: config.pollMinMs,
      maxIntervalMs: config.pollMaxMs,
      onPoll: () => wakePollWaiters(jobId),
      onRetry: (error, delay) => {
        state.rowNotes.set(jobId, `${describe(error).title}: retrying in ${Math.ceil(delay / 1000)} s`);
        render(jobId);
      },
    })
    .then((job) => {
      forget(jobId);
      if (job.status === 'failed' || job.status === 'cancelled') {
        refreshCredits().catch(() => {});
      }
    })
    .catch((error) => {
      if (error instanceof StoryqError && error.status === 404) {
        forget(jobId); // deleted by an admin clean, or another user's id in localStorage
        removeRow(jobId);
        return;
      }
      fail(error);
    })
    .finally(() => {
      if (state.watchers.get(jobId) === controller) state.watchers.delete(jobId);
      wakePollWaiters(jobId); // its end: a reader reads the story's last text
    });
}

/** With no watcher on the job (it ended, or it is not this page's), how often a reader reads. */
const UNWATCHED_READ_MS = 15000;

/**
 * Resolves at the next answer of the API about the job (its watcher's poll, whose pace the API
 * sets), or when its watcher ends; after UNWATCHED_READ_MS when no watcher follows the job.
 * A story's reader re-reads the text then, so the text costs no polls of its own pace.
 * @param {string | null} jobId
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
export function jobPolled(jobId, signal) {
  return new Promise((resolve) => {
    const waiters = jobId && state.watchers.has(jobId) ? state.pollWaiters : null;
    let set = waiters && jobId ? waiters.get(jobId) : undefined;
    if (waiters && jobId && !set) waiters.set(jobId, (set = new Set()));
    const done = () => {
      clearTimeout(timer);
      set?.delete(done);
      resolve();
    };
    const timer = set ? undefined : setTimeout(done, UNWATCHED_READ_MS);
    set?.add(done);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** @param {string} jobId */
function wakePollWaiters(jobId) {
  const waiters = state.pollWaiters.get(jobId);
  if (!waiters) return;
  state.pollWaiters.delete(jobId);
  for (const wake of waiters) wake();
}

/** @param {Job} job */
function announceChange(job) {
  const name = titleOf(job);
  const text = {
    pending: `“${name}” is back in the queue.`,
    processing: `“${name}” is being written.`,
    completed: `“${name}” is ready to read.`,
    failed: `“${name}” could not be written.`,
    cancelled: `“${name}” ${job.startedAt ? 'was stopped' : 'was cancelled'}.`,
  }[job.status];
  announce(text);
}
