// @ts-check
/**
 * One job's page for the operator (`#admin/job/<id>`): its fields, every attempt (times,
 * duration, outcome, error, model, tokens, cost), the story so far, re-read while the job is
 * unfinished; Retry (a failed job) and Cancel (a waiting or running one), each confirmed.
 */

import { adminFail, refreshLater, viewSignal } from './admin.js';
import { confirmed } from './admin-actions.js';
import { STATUS_WORD } from './admin-jobs.js';
import { adminState, adminUi } from './admin-ui.js';
import { dollarsOf, instantOf, spanOf } from './format.js';
import { storyBlocks } from './reader.js';
import { config, state } from './state.js';

/** @typedef {import('./storyq-client.js').AdminJobDetail} AdminJobDetail */
/** @typedef {import('./storyq-client.js').Attempt} Attempt */
/** @typedef {import('./storyq-client.js').Job} Job */

/** Empty the job page: nothing of the last job shown stays in it. */
export function clearJobPage() {
  adminState.job = null;
  adminUi.jobTitle.textContent = 'Loading…';
  adminUi.jobResult.textContent = '';
  adminUi.jobFields.replaceChildren();
  adminUi.attempts.replaceChildren();
  adminUi.story.replaceChildren();
  adminUi.storyMeta.textContent = '';
  adminUi.jobRetry.hidden = true;
  adminUi.jobCancel.hidden = true;
}

/** Show a job's page (the address changed to it). @param {string} jobId */
export function openJob(jobId) {
  const another = adminState.jobId !== jobId;
  adminState.jobId = jobId;
  if (another) clearJobPage();
  loadJob().then(() => {
    if (another) adminUi.jobTitle.focus();
  }, adminFail);
}

/** Read the job again; while it is unfinished, again after `adminJobRefreshMs` (2 s). */
export async function loadJob() {
  const jobId = adminState.jobId;
  if (!state.client || !jobId) return;
  try {
    const job = await state.client.adminJob(jobId, { signal: viewSignal() });
    if (adminState.view !== 'job' || adminState.jobId !== jobId) return;
    adminState.job = job;
    render(job);
  } finally {
    const job = adminState.job;
    if (adminState.view === 'job' && adminState.jobId === jobId && job && !isFinished(job)) {
      refreshLater(() => loadJob().catch(adminFail), config.adminJobRefreshMs ?? 2000);
    }
  }
}

/** @param {AdminJobDetail} job */
function isFinished(job) {
  return job.status === 'completed' || job.status === 'failed' || job.status === 'cancelled';
}

/** @param {AdminJobDetail} job */
function titleOf(job) {
  if (job.title) return job.title;
  return job.prompt.length > 60 ? `${job.prompt.slice(0, 57)}…` : job.prompt;
}

/** @param {AdminJobDetail} job */
function render(job) {
  adminUi.job.dataset.jobId = job.jobId;
  adminUi.job.dataset.status = job.status;
  adminUi.jobTitle.textContent = titleOf(job);
  adminUi.jobRetry.hidden = job.status !== 'failed';
  adminUi.jobCancel.hidden = !(job.status === 'pending' || job.status === 'processing') || job.cancelRequested;
  renderFields(job);
  renderAttempts(job);
  renderStory(job);
}

/** @param {AdminJobDetail} job */
function statusText(job) {
  const word = job.status === 'processing' && job.cancelRequested
    ? 'running, being cancelled'
    : STATUS_WORD[job.status] ?? job.status;
  const notes = [];
  if (job.cancelReason) notes.push(`by ${job.cancelReason}`);
  if (job.refunded) notes.push('refunded');
  return notes.length ? `${word} (${notes.join(', ')})` : word;
}

/** @param {AdminJobDetail} job */
function renderFields(job) {
  /** @type {[string, string][]} */
  const fields = [
    ['Status', statusText(job)],
    ['Job id', job.jobId],
    ['Story id', job.storyId],
    ['User id', job.userId],
    ['Tier', `${job.tier ?? '(none)'} (priority ${job.priority})`],
    ['Attempts', `${job.attempts} of ${job.maxAttempts}`],
    ['Created', instantOf(job.createdAt)],
    ['Started', instantOf(job.startedAt) || '–'],
    ['Finished', instantOf(job.finishedAt) || '–'],
  ];
  if (job.status === 'processing' && job.heartbeatAt) {
    const age = (Date.now() - Date.parse(job.heartbeatAt)) / 1000;
    fields.push(['Last heartbeat', `${instantOf(job.heartbeatAt)} (${spanOf(age)} ago)`]);
  }
  if (job.status === 'pending') fields.push(['May start', instantOf(job.nextAttemptAt)]);
  if (job.errorCode) {
    fields.push(['Error', `${job.errorCode}${job.errorMessage ? `: ${job.errorMessage}` : ''}`]);
  }
  fields.push(
    ['Prompt', job.prompt],
    ['Genre', job.genre ?? '–'],
    ['Language', job.language],
    ['Length asked', `${job.targetWords.toLocaleString()} words`],
  );
  const items = fields.flatMap(([name, value]) => {
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.textContent = value;
    dd.dataset.field = name;
    return [dt, dd];
  });
  adminUi.jobFields.replaceChildren(...items);
}

/** @param {AdminJobDetail} job */
function renderAttempts(job) {
  const rows = job.attemptHistory.map((attempt) => {
    const tr = document.createElement('tr');
    tr.dataset.attempt = String(attempt.attempt);
    tr.dataset.outcome = attempt.outcome ?? 'running';
    const number = document.createElement('th');
    number.scope = 'row';
    number.textContent = String(attempt.attempt);
    const error = attempt.errorCode
      ? `${attempt.errorCode}${attempt.errorMessage ? `: ${attempt.errorMessage}` : ''}`
      : '–';
    tr.append(
      number,
      cell(instantOf(attempt.startedAt)),
      cell(instantOf(attempt.endedAt) || '–'),
      cell(durationOf(attempt)),
      cell(attempt.outcome ?? 'running'),
      cell(error),
      cell(attempt.model ?? '–'),
      cell(tokensOf(attempt), 'number'),
      cell(attempt.usageRecordedAt ? dollarsOf(attempt.costUsd) : '–', 'number'),
    );
    return tr;
  });
  adminUi.attempts.replaceChildren(...rows);
  adminUi.attemptsEmpty.hidden = rows.length > 0;
}

/** @param {Attempt} attempt */
function durationOf(attempt) {
  const started = Date.parse(attempt.startedAt);
  if (!attempt.endedAt) return `${spanOf((Date.now() - started) / 1000)} so far`;
  return spanOf((Date.parse(attempt.endedAt) - started) / 1000);
}

/** @param {Attempt} attempt */
function tokensOf(attempt) {
  if (!attempt.usageRecordedAt) return 'not recorded';
  const total = attempt.promptTokens + attempt.completionTokens;
  return `${total.toLocaleString()} (${attempt.promptTokens.toLocaleString()} + `
    + `${attempt.completionTokens.toLocaleString()})${attempt.usageEstimated ? ' estimated' : ''}`;
}

/** @param {string} text @param {string} [className] */
function cell(text, className) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

const STORY_STATUS = {
  pending: 'Not written yet',
  writing: 'Being written',
  ready: 'Ready',
  failed: 'Failed (the text written before it stays)',
  cancelled: 'Cancelled (the text written before it stays)',
};

/** @param {AdminJobDetail} job */
function renderStory(job) {
  const words = job.words ? ` · ${job.words.toLocaleString()} words` : '';
  adminUi.storyMeta.textContent = `${STORY_STATUS[job.storyStatus] ?? job.storyStatus}${words}`;
  adminUi.story.dataset.status = job.storyStatus;
  adminUi.story.lang = job.language;
  adminUi.story.setAttribute('aria-busy', String(job.storyStatus === 'writing'));
  const blocks = storyBlocks(job.content);
  if (!blocks.length) {
    const p = document.createElement('p');
    p.className = 'hint';
    p.textContent = 'No text yet.';
    blocks.push(p);
  }
  adminUi.story.replaceChildren(...blocks);
}

/** What an admin's retry or cancel came to, in words. @param {Job} job */
function outcomeOf(job) {
  if (job.status === 'pending') {
    const wait = job.waitTime;
    return wait
      ? `Back in the queue at position ${wait.position + 1}${wait.queueLength ? ` of ${wait.queueLength}` : ''}.`
      : 'Back in the queue.';
  }
  if (job.status === 'cancelled') return `Cancelled${job.refunded ? ' and refunded' : ''}.`;
  if (job.status === 'processing' && job.cancelRequested) {
    return 'Cancel requested: its worker stops it within seconds, then it is refunded.';
  }
  return `The job is ${STATUS_WORD[job.status] ?? job.status}.`;
}

/** @param {'retry' | 'cancel'} what */
function act(what) {
  const client = state.client;
  const job = adminState.job;
  if (!client || !job) return;
  const retry = what === 'retry';
  void confirmed({
    button: retry ? adminUi.jobRetry : adminUi.jobCancel,
    result: adminUi.jobResult,
    question: retry
      ? { title: 'Retry this job?',
        text: `“${titleOf(job)}” goes back in the queue with its attempts counted afresh; `
          + 'its user is charged nothing again.',
        confirmLabel: 'Retry the job' }
      : { title: 'Cancel this job?',
        text: `“${titleOf(job)}” is ${STATUS_WORD[job.status]}: it will be cancelled and its `
          + 'user refunded (a running job stops within seconds, keeping its text).',
        confirmLabel: 'Cancel the job' },
    act: () => (retry ? client.adminRetry(job.jobId) : client.adminCancel(job.jobId)),
    said: outcomeOf,
    after: () => loadJob(),
  });
}

export function bindJobPage() {
  adminUi.jobRetry.addEventListener('click', () => act('retry'));
  adminUi.jobCancel.addEventListener('click', () => act('cancel'));
  adminUi.jobRefresh.addEventListener('click', () => loadJob().catch(adminFail));
}
