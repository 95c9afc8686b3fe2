// @ts-check
/**
 * The list of the user's jobs: loading and paging it, a row per job, cancelling a waiting job
 * and stopping a running one from its row.
 */

import { StoryqError } from './storyq-client.js';
import { fail, refreshCredits } from './account.js';
import { detailOf, timeOf, titleOf } from './format.js';
import { announce, clearError } from './messages.js';
import { openStory } from './reader.js';
import { state, ui } from './state.js';
import { forget } from './storage.js';
import { watch } from './watchers.js';

/** @typedef {import('./storyq-client.js').Job} Job */
/** @typedef {import('./storyq-client.js').JobStatus} JobStatus */

const PAGE_SIZE = 10;

const STATUS_LABEL = /** @type {Record<JobStatus, string>} */ ({
  pending: 'Queued',
  processing: 'Writing',
  completed: 'Ready',
  failed: 'Failed',
  cancelled: 'Cancelled',
});

export function resetList() {
  state.jobs.clear();
  state.order = [];
  state.rows.clear();
  state.rowNotes.clear();
  state.nextCursor = null;
  ui.jobs.replaceChildren();
  ui.loadMore.hidden = true;
  ui.jobsEmpty.hidden = true;
}

/** @param {boolean} reset */
export async function loadJobs(reset) {
  if (!state.client) return;
  const status = /** @type {JobStatus | ''} */ (ui.filter.value) || undefined;
  const page = await state.client.listJobs({
    status, limit: PAGE_SIZE, cursor: reset ? null : state.nextCursor,
  });
  if (reset) {
    // Keep rows of jobs being watched (they may not match the filter, but they are live).
    const live = state.order.filter((id) => state.watchers.has(id) && (!status || state.jobs.get(id)?.status === status));
    state.order = [];
    state.rows.clear();
    ui.jobs.replaceChildren();
    for (const id of live) {
      const job = state.jobs.get(id);
      if (job) upsert(job);
    }
  }
  for (const job of page.jobs) {
    const known = state.jobs.get(job.jobId);
    // A watched job's own view (with waitTime/progress) is fresher than the list's.
    upsert(known && state.watchers.has(job.jobId) ? known : job);
  }
  sortRows();
  state.nextCursor = page.nextCursor;
  ui.loadMore.hidden = !page.nextCursor;
  ui.jobsEmpty.hidden = state.order.length > 0;
}

/** Newest first, as the API lists them. */
export function sortRows() {
  state.order.sort((a, b) => createdOf(b) - createdOf(a));
  for (const id of state.order) {
    const row = state.rows.get(id);
    if (row) ui.jobs.append(row);
  }
}

/** @param {string} id */
function createdOf(id) {
  const job = state.jobs.get(id);
  return job ? Date.parse(job.createdAt) || 0 : 0;
}

/**
 * Record a view of a job and (re)draw its row.
 * @param {Job} job
 * @param {{prepend?: boolean}} [options]
 */
export function upsert(job, { prepend = false } = {}) {
  const previous = state.jobs.get(job.jobId);
  // A list entry has no waitTime/progress: keep the sections the job's own view had.
  // A stop once asked for stays asked for: a view from before the DELETE may come later.
  const merged = previous && previous.status === job.status
    ? { ...previous, ...job, waitTime: job.waitTime ?? previous.waitTime, progress: job.progress ?? previous.progress,
      cancelRequested: Boolean(job.cancelRequested || previous.cancelRequested) }
    : job;
  state.jobs.set(job.jobId, merged);
  if (!state.order.includes(job.jobId)) {
    if (prepend) state.order.unshift(job.jobId);
    else state.order.push(job.jobId);
  }
  let row = state.rows.get(job.jobId);
  if (!row) {
    row = createRow(job.jobId);
    state.rows.set(job.jobId, row);
    if (prepend) ui.jobs.prepend(row);
    else ui.jobs.append(row);
  }
  ui.jobsEmpty.hidden = true;
  render(job.jobId);
}

/** @param {string} jobId */
export function removeRow(jobId) {
  state.rows.get(jobId)?.remove();
  state.rows.delete(jobId);
  state.jobs.delete(jobId);
  state.order = state.order.filter((id) => id !== jobId);
  ui.jobsEmpty.hidden = state.order.length > 0;
}

/** @param {string} jobId */
function createRow(jobId) {
  const fragment = /** @type {DocumentFragment} */ (ui.jobTemplate.content.cloneNode(true));
  const row = /** @type {HTMLLIElement} */ (fragment.querySelector('li'));
  row.dataset.jobId = jobId;
  const read = /** @type {HTMLButtonElement} */ (row.querySelector('.read'));
  const cancel = /** @type {HTMLButtonElement} */ (row.querySelector('.cancel'));
  read.addEventListener('click', () => {
    const job = state.jobs.get(jobId);
    if (job) openStory(job.storyId).catch(fail);
  });
  const stop = /** @type {HTMLButtonElement} */ (row.querySelector('.stop'));
  cancel.addEventListener('click', () => cancelJob(jobId, cancel));
  stop.addEventListener('click', () => cancelJob(jobId, stop));
  return row;
}

/** Redraw one row from state. @param {string} jobId */
export function render(jobId) {
  const row = state.rows.get(jobId);
  const job = state.jobs.get(jobId);
  if (!row || !job) return;
  row.dataset.status = job.status;
  const title = /** @type {HTMLElement} */ (row.querySelector('.job-title'));
  title.textContent = titleOf(job);
  const badge = /** @type {HTMLElement} */ (row.querySelector('.badge'));
  const stopping = job.status === 'processing' && Boolean(job.cancelRequested);
  badge.textContent = stopping ? 'Stopping' : STATUS_LABEL[job.status] || job.status;
  badge.className = `badge ${job.status}`;
  const detail = /** @type {HTMLElement} */ (row.querySelector('.job-detail'));
  const note = state.rowNotes.get(jobId);
  detail.textContent = `${detailOf(job)}${note ? ` · ${note}` : ''}`;
  const created = timeOf(job.createdAt);
  row.title = created ? `Requested ${created}` : '';
  const progress = /** @type {HTMLProgressElement} */ (row.querySelector('.job-progress'));
  progress.hidden = job.status !== 'processing';
  if (job.status === 'processing') {
    // Indeterminate until the first words are reported.
    if (job.progress?.words) progress.value = job.progress.percent;
    else progress.removeAttribute('value');
    progress.setAttribute('aria-label', `Progress of ${titleOf(job)}`);
  }
  const read = /** @type {HTMLButtonElement} */ (row.querySelector('.read'));
  read.hidden = !hasText(job);
  read.setAttribute('aria-label', `Read ${titleOf(job)}`);
  const cancel = /** @type {HTMLButtonElement} */ (row.querySelector('.cancel'));
  cancel.hidden = job.status !== 'pending';
  cancel.setAttribute('aria-label', `Cancel ${titleOf(job)}`);
  const stop = /** @type {HTMLButtonElement} */ (row.querySelector('.stop'));
  stop.hidden = job.status !== 'processing' || stopping;
  stop.setAttribute('aria-label', `Stop ${titleOf(job)}`);
}

/** Whether the job's story may have text to read: it is written, or was being written. @param {Job} job */
function hasText(job) {
  if (job.status === 'completed' || job.status === 'processing') return true;
  return (job.status === 'cancelled' || job.status === 'failed') && Boolean(job.startedAt);
}

/**
 * Cancel a waiting job, or stop a running one (the same DELETE). A waiting one (or one already
 * cancelled) is cancelled and refunded in the answer (200). A running one is being stopped
 * (202): its row says so and its watcher, kept on, sees it end cancelled (refunded, its text
 * kept) or completed if it finished first. A 409: it completed or failed first.
 * @param {string} jobId @param {HTMLButtonElement} button
 */
async function cancelJob(jobId, button) {
  if (!state.client) return;
  button.disabled = true;
  clearError();
  try {
    const job = await state.client.cancel(jobId);
    if (job.status === 'processing') {
      upsert(job);
      watch(jobId); // already watched, unless its watcher gave up
      announce(`Stopping “${titleOf(job)}”…`);
      return;
    }
    state.watchers.get(jobId)?.abort();
    state.watchers.delete(jobId);
    forget(jobId);
    upsert(job);
    const done = job.startedAt ? 'was stopped' : 'was cancelled';
    announce(`“${titleOf(job)}” ${done}${job.refunded ? ' and your credit refunded' : ''}.`);
    await refreshCredits();
  } catch (error) {
    if (error instanceof StoryqError && error.status === 409) {
      // It finished first: show how.
      state.client.getJob(jobId).then((job) => upsert(job)).catch(() => {});
    }
    fail(error);
  } finally {
    button.disabled = false;
  }
}

export function bindJobList() {
  ui.filter.addEventListener('change', () => loadJobs(true).catch(fail));
  ui.refresh.addEventListener('click', () => {
    clearError();
    Promise.all([loadJobs(true), refreshCredits()]).catch(fail);
  });
  ui.loadMore.addEventListener('click', async () => {
    ui.loadMore.disabled = true;
    try {
      await loadJobs(false);
    } catch (error) {
      fail(error);
    } finally {
      ui.loadMore.disabled = false;
    }
  });
}
