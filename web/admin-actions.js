// @ts-check
/**
 * The operator's actions on the queue (empty it, clean finished jobs, grant credits), the
 * confirmation each action asks for first (a modal <dialog>), and how an action's result or
 * error is shown beside it.
 */

import { StoryqError } from './storyq-client.js';
import { adminFail, refreshQueueView } from './admin.js';
import { adminState, adminUi } from './admin-ui.js';
import { lastQueueStats } from './admin-queue.js';
import { refreshCredits } from './account.js';
import { clearError } from './messages.js';
import { state } from './state.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Ask before acting: resolves true when the operator confirms, false when they go back (the
 * button, Escape). Focus starts on "Go back", the harmless choice.
 * @param {{title: string, text: string, confirmLabel: string}} question
 * @returns {Promise<boolean>}
 */
export function confirmAction({ title, text, confirmLabel }) {
  const dialog = adminUi.confirm;
  adminUi.confirmTitle.textContent = title;
  adminUi.confirmText.textContent = text;
  adminUi.confirmOk.textContent = confirmLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.showModal();
  });
}

/**
 * Say how an action went, beside it.
 * @param {HTMLElement} where @param {string} text @param {'ok' | 'none' | 'error'} [kind]
 */
export function showResult(where, text, kind = 'ok') {
  where.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  where.className = `result ${kind}`;
  delete where.dataset.code;
  where.textContent = text;
}

/**
 * Say why an action failed, beside it: the problem's title and detail (a 401 signs out, a 403
 * shows "Admins only", as for every read of the operator page).
 * @param {HTMLElement} where @param {unknown} error
 */
export function showProblem(where, error) {
  if (error instanceof StoryqError && (error.status === 401 || error.status === 403)) {
    adminFail(error);
    return;
  }
  if (!(error instanceof StoryqError)) {
    adminFail(error);
    return;
  }
  where.setAttribute('role', 'alert');
  where.className = 'result error';
  where.dataset.code = error.code;
  const fields = error.errors.map((e) => `${e.loc[e.loc.length - 1]}: ${e.msg}`).join('; ');
  const detail = fields || error.detail;
  where.textContent = `${error.title || `Error ${error.status}`}${detail ? `: ${detail}` : ''}`;
}

/**
 * Confirm, then run an action with its button disabled, and show its result or its error.
 * @template T
 * @param {{button: HTMLButtonElement, result: HTMLElement,
 *   question: {title: string, text: string, confirmLabel: string},
 *   act: () => Promise<T>, said: (answer: T) => string, after?: (answer: T) => unknown}} action
 */
export async function confirmed({ button, result, question, act, said, after }) {
  if (!state.client) return;
  clearError();
  if (!(await confirmAction(question))) {
    showResult(result, 'Nothing was done.', 'none');
    return;
  }
  button.disabled = true;
  try {
    const answer = await act();
    showResult(result, said(answer));
    await after?.(answer);
  } catch (error) {
    showProblem(result, error);
  } finally {
    button.disabled = false;
  }
}

/** Once an action changed the queue: its counts and the page of jobs, read again. */
function queueChanged() {
  if (adminState.view === 'queue') refreshQueueView();
}

/** @param {number} n @param {string} one @param {string} [many] */
const plural = (n, one, many = `${one}s`) => `${n.toLocaleString()} ${n === 1 ? one : many}`;

function emptyQueue() {
  const client = state.client;
  if (!client) return;
  const stats = lastQueueStats();
  // Every pending job goes, retries waiting for their backoff too; the count is as last read.
  const pending = stats === undefined ? undefined : stats.waiting + stats.delayed;
  void confirmed({
    button: adminUi.emptyQueue,
    result: adminUi.emptyResult,
    question: {
      title: 'Empty the queue?',
      text: `${pending === undefined ? 'Every waiting job' : `Every waiting job (about ${plural(pending, 'job')}, retries included)`} `
        + 'will be cancelled and their credits refunded. Running jobs go on.',
      confirmLabel: 'Empty the queue',
    },
    act: () => client.adminEmpty(),
    said: (answer) => `Cancelled ${plural(answer.cancelled, 'waiting job')} and refunded `
      + `${answer.cancelled === 1 ? 'its credit' : 'their credits'}.`,
    after: queueChanged,
  });
}

function clean() {
  const client = state.client;
  if (!client) return;
  const form = new FormData(adminUi.cleanForm);
  const status = /** @type {'completed' | 'failed' | 'cancelled'} */ (String(form.get('status')));
  const hours = Number(form.get('hours'));
  if (String(form.get('hours') ?? '').trim() === '' || !Number.isFinite(hours) || hours < 0) {
    showResult(adminUi.cleanResult, 'Give the age in hours: 0 or more.', 'error');
    return;
  }
  const age = hours === 1 ? '1 hour' : `${hours.toLocaleString()} hours`;
  void confirmed({
    button: /** @type {HTMLButtonElement} */ (adminUi.cleanForm.querySelector('button[type=submit]')),
    result: adminUi.cleanResult,
    question: {
      title: `Clean ${status} jobs?`,
      text: `The rows of ${status} jobs that finished more than ${age} ago will be deleted. `
        + 'Their stories stay.',
      confirmLabel: `Delete ${status} jobs`,
    },
    act: () => client.adminClean({ status, olderThanSeconds: Math.round(hours * 3600) }),
    said: (answer) => `Deleted ${plural(answer.deleted, `${answer.status} job`)}.`,
    after: queueChanged,
  });
}

function grantCredits() {
  const client = state.client;
  if (!client) return;
  const form = new FormData(adminUi.creditsForm);
  const userId = String(form.get('userId') ?? '').trim();
  const amount = Number(form.get('amount'));
  if (!UUID.test(userId) || !Number.isInteger(amount) || amount < 1 || amount > 1000000) {
    showResult(adminUi.creditsResult,
      'Give a user id (a UUID) and a whole number of credits, 1 to 1,000,000.', 'error');
    return;
  }
  void confirmed({
    button: /** @type {HTMLButtonElement} */ (adminUi.creditsForm.querySelector('button[type=submit]')),
    result: adminUi.creditsResult,
    question: {
      title: 'Grant credits?',
      text: `${plural(amount, 'credit')} will be added to the balance of user ${userId}.`,
      confirmLabel: `Grant ${plural(amount, 'credit')}`,
    },
    act: () => client.adminGrantCredits({ userId, amount }),
    said: (answer) => `User ${answer.userId} now has ${plural(answer.credits, 'credit')}.`,
    after: (answer) => (answer.userId === state.userId ? refreshCredits() : undefined),
  });
}

export function bindQueueActions() {
  adminUi.emptyQueue.addEventListener('click', emptyQueue);
  adminUi.cleanForm.addEventListener('submit', (event) => {
    event.preventDefault();
    clean();
  });
  adminUi.creditsForm.addEventListener('submit', (event) => {
    event.preventDefault();
    grantCredits();
  });
}
