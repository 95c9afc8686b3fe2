// @ts-check
/**
 * The operator's job browser: every user's jobs, newest first, filtered by status (several at
 * once), user, tier and creation time, a page at a time with the API's cursor (next, previous,
 * back to the first). Each row links to the job's page.
 */

import { adminFail, jobHref, viewSignal } from './admin.js';
import { adminState, adminUi } from './admin-ui.js';
import { instantOf } from './format.js';
import { clearError } from './messages.js';
import { state } from './state.js';

/** @typedef {import('./storyq-client.js').AdminJob} AdminJob */
/** @typedef {import('./storyq-client.js').AdminJobFilters} AdminJobFilters */
/** @typedef {import('./storyq-client.js').JobStatus} JobStatus */

/** What the browser calls each status (as its filter's boxes do). */
export const STATUS_WORD = /** @type {Record<JobStatus, string>} */ ({
  pending: 'waiting',
  processing: 'running',
  completed: 'completed',
  failed: 'failed',
  cancelled: 'cancelled',
});

/** The filters the form holds now. @returns {AdminJobFilters} */
function readFilters() {
  const form = new FormData(adminUi.filters);
  /** @param {string} name */
  const text = (name) => String(form.get(name) ?? '').trim();
  /** @param {string} name A datetime-local value is the browser's local time. */
  const instant = (name) => (text(name) ? new Date(text(name)) : undefined);
  return {
    status: /** @type {JobStatus[]} */ (form.getAll('status').map(String)),
    userId: text('userId') || undefined,
    tier: text('tier') || undefined,
    createdAfter: instant('createdAfter'),
    createdBefore: instant('createdBefore'),
    limit: Number(text('limit')) || undefined,
  };
}

/** Back to the first page of every job (signing out, another admin). */
export function resetJobBrowser() {
  adminUi.filters.reset();
  adminState.filters = {};
  adminState.cursors = [null];
  adminState.nextCursor = null;
  adminState.drawnPage = '';
  adminUi.jobRows.replaceChildren();
  adminUi.jobsPage.textContent = '';
  adminUi.firstPage.hidden = true;
  adminUi.previousPage.hidden = true;
  adminUi.nextPage.hidden = true;
}

/** Read the page the browser is on again (its cursor), with the filters last applied. */
export async function loadJobPage() {
  if (!state.client) return;
  const cursors = adminState.cursors;
  const cursor = cursors[cursors.length - 1];
  // The filters last applied ({} until then: the form's defaults, every job 25 a page).
  const page = await state.client.adminJobs({ ...adminState.filters, cursor, signal: viewSignal() });
  if (adminState.view !== 'queue' || adminState.cursors !== cursors) return;
  adminState.nextCursor = page.nextCursor;
  // Redrawn only when something changed: a refresh leaves the focus where it was.
  const drawn = JSON.stringify([cursors.length, page]);
  if (drawn === adminState.drawnPage) return;
  adminState.drawnPage = drawn;
  adminUi.jobRows.replaceChildren(...page.jobs.map(jobRow));
  adminUi.jobsEmpty.hidden = page.jobs.length > 0;
  const number = cursors.length;
  adminUi.jobsPage.textContent = page.jobs.length
    ? `Page ${number}: ${page.jobs.length} job${page.jobs.length === 1 ? '' : 's'}`
      + `${page.nextCursor ? ', more on the next page' : ''}`
    : `Page ${number}`;
  adminUi.firstPage.hidden = number <= 1;
  adminUi.previousPage.hidden = number <= 2;
  adminUi.nextPage.hidden = !page.nextCursor;
}

/** @param {AdminJob} job */
function jobRow(job) {
  const tr = document.createElement('tr');
  tr.dataset.jobId = job.jobId;
  tr.dataset.status = job.status;

  const name = document.createElement('td');
  const link = document.createElement('a');
  link.href = jobHref(job.jobId);
  if (job.title) {
    link.textContent = job.title;
    const id = document.createElement('code');
    id.className = 'hint';
    id.textContent = job.jobId;
    name.append(link, document.createElement('br'), id);
  } else {
    const id = document.createElement('code');
    id.textContent = job.jobId; // untitled: the id names it
    link.append(id);
    name.append(link);
  }

  const status = document.createElement('td');
  const badge = document.createElement('span');
  badge.className = `badge ${job.status}`;
  badge.textContent = job.status === 'processing' && job.cancelRequested
    ? 'stopping'
    : STATUS_WORD[job.status] ?? job.status;
  status.append(badge);
  const why = job.errorCode ?? (job.cancelReason ? `by ${job.cancelReason}` : '');
  if (why) {
    const note = document.createElement('div');
    note.className = 'hint';
    note.textContent = why;
    status.append(note);
  }

  const user = document.createElement('td');
  const userId = document.createElement('code');
  userId.textContent = job.userId.slice(0, 8);
  userId.title = job.userId;
  user.append(userId);

  tr.append(
    name,
    status,
    user,
    textCell(job.tier ?? '(none)'),
    textCell(`${job.attempts} of ${job.maxAttempts}`),
    textCell(instantOf(job.createdAt)),
    textCell(job.words === null ? '–' : job.words.toLocaleString(), 'number'),
  );
  return tr;
}

/** @param {string} text @param {string} [className] */
function textCell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

/** Go to the page `cursors` ends with. @param {(string | null)[]} cursors @param {HTMLButtonElement} [button] */
async function goTo(cursors, button) {
  adminState.cursors = cursors;
  if (button) button.disabled = true;
  try {
    await loadJobPage();
  } catch (error) {
    adminFail(error);
  } finally {
    if (button) button.disabled = false;
  }
}

export function bindJobBrowser() {
  adminUi.filters.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!adminUi.filters.reportValidity()) return;
    clearError();
    adminState.filters = readFilters();
    void goTo([null]);
  });
  adminUi.filters.addEventListener('reset', () => {
    // The form's fields are reset after this event: read them once they are.
    setTimeout(() => {
      if (adminState.view !== 'queue') return;
      adminState.filters = readFilters();
      void goTo([null]);
    });
  });
  adminUi.nextPage.addEventListener('click', () => {
    if (adminState.nextCursor) void goTo([...adminState.cursors, adminState.nextCursor], adminUi.nextPage);
  });
  adminUi.previousPage.addEventListener('click', () => {
    void goTo(adminState.cursors.slice(0, -1), adminUi.previousPage);
  });
  adminUi.firstPage.addEventListener('click', () => void goTo([null], adminUi.firstPage));
}
