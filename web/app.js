// @ts-check
/**
 * The storyq page: sign in, write a prompt, Generate, watch the queue, read the story.
 *
 * Everything it knows about the API goes through storyq-client.js. State that must survive a
 * reload lives in localStorage: the pasted token (token sign-in only) and, per user, the jobs
 * this browser is watching and the prompts typed here (to name untitled jobs). After a reload
 * the page resumes watching those and every job the API lists as pending or processing.
 */

import { StoryqClient, StoryqError, isTerminal, newIdempotencyKey } from './storyq-client.js';

/** @typedef {import('./storyq-client.js').Job} Job */
/** @typedef {import('./storyq-client.js').JobStatus} JobStatus */
/** @typedef {import('./storyq-client.js').GenerateRequest} GenerateRequest */

/**
 * @typedef {object} StoryqConfig
 * @property {string} [apiBaseUrl] the API's origin ('' = this page's origin)
 * @property {string} [supabaseUrl]
 * @property {string} [supabaseAnonKey]
 * @property {string} [supabaseScript] URL of a supabase-js UMD build, loaded if needed
 * @property {boolean} [realtime] wake watchers through Supabase Realtime (default true)
 * @property {number} [pollMinMs] shortest wait between two polls of a job (default 2000)
 * @property {number} [pollMaxMs] longest wait between two polls of a job (default 15000)
 */

/** @type {StoryqConfig} */
const config = /** @type {any} */ (window).STORYQ_CONFIG || {};
const TOKEN_KEY = 'storyq.token';
const WATCH_PREFIX = 'storyq.watching.';
const PAGE_SIZE = 10;
const RESUME_LIMIT = 100;

const STATUS_LABEL = /** @type {Record<JobStatus, string>} */ ({
  pending: 'Queued',
  processing: 'Writing',
  completed: 'Ready',
  failed: 'Failed',
  cancelled: 'Cancelled',
});

/** @param {string} id @returns {any} */
const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el;
};

const ui = {
  account: /** @type {HTMLElement} */ ($('account')),
  credits: /** @type {HTMLElement} */ ($('credits')),
  who: /** @type {HTMLElement} */ ($('who')),
  signOut: /** @type {HTMLButtonElement} */ ($('sign-out')),
  notice: /** @type {HTMLElement} */ ($('notice')),
  status: /** @type {HTMLElement} */ ($('status')),
  signIn: /** @type {HTMLElement} */ ($('sign-in')),
  passwordForm: /** @type {HTMLFormElement} */ ($('password-form')),
  tokenForm: /** @type {HTMLFormElement} */ ($('token-form')),
  app: /** @type {HTMLElement} */ ($('app')),
  form: /** @type {HTMLFormElement} */ ($('generate-form')),
  prompt: /** @type {HTMLTextAreaElement} */ ($('prompt')),
  promptCount: /** @type {HTMLElement} */ ($('prompt-count')),
  generate: /** @type {HTMLButtonElement} */ ($('generate')),
  generateHint: /** @type {HTMLElement} */ ($('generate-hint')),
  filter: /** @type {HTMLSelectElement} */ ($('status-filter')),
  refresh: /** @type {HTMLButtonElement} */ ($('refresh')),
  jobs: /** @type {HTMLOListElement} */ ($('jobs')),
  jobsEmpty: /** @type {HTMLElement} */ ($('jobs-empty')),
  loadMore: /** @type {HTMLButtonElement} */ ($('load-more')),
  jobTemplate: /** @type {HTMLTemplateElement} */ ($('job-template')),
  reader: /** @type {HTMLElement} */ ($('reader')),
  storyTitle: /** @type {HTMLElement} */ ($('story-title')),
  storyMeta: /** @type {HTMLElement} */ ($('story-meta')),
  storyPrompt: /** @type {HTMLElement} */ ($('story-prompt')),
  storyContent: /** @type {HTMLElement} */ ($('story-content')),
  closeReader: /** @type {HTMLButtonElement} */ ($('close-reader')),
};

const state = {
  /** @type {StoryqClient | null} */
  client: null,
  /** @type {any} a supabase-js client when Supabase Auth is configured */
  supabase: null,
  /** @type {string | null} pasted token (token sign-in) */
  token: null,
  /** @type {string} */
  userId: '',
  /** @type {number | null} null when the API has no /api/me */
  credits: null,
  /** @type {Map<string, Job>} every job the page knows, by id */
  jobs: new Map(),
  /** @type {string[]} job ids in list order (newest first) */
  order: [],
  /** @type {string | null} */
  nextCursor: null,
  /** @type {Map<string, AbortController>} running watchers */
  watchers: new Map(),
  /** @type {Map<string, HTMLLIElement>} */
  rows: new Map(),
  /** @type {Map<string, string>} retry notes shown on rows */
  rowNotes: new Map(),
  blockedUntil: 0,
  /** @type {ReturnType<typeof setInterval> | undefined} */
  blockTimer: undefined,
  signingOut: false,
};

// ---------------------------------------------------------------------------------------------
// Messages

/**
 * What to tell the user about an error, in plain words.
 * @param {unknown} error
 * @returns {{title: string, text: string}}
 */
function describe(error) {
  if (!(error instanceof StoryqError)) {
    return { title: 'Something went wrong', text: error instanceof Error ? error.message : String(error) };
  }
  if (error.code === 'sign_in_failed') return { title: error.title, text: error.detail };
  const seconds = error.retryAfterMs !== null ? Math.ceil(error.retryAfterMs / 1000) : null;
  switch (error.status) {
    case 0:
      return { title: 'Cannot reach storyq',
        text: 'The API did not answer. Check your connection and try again.' };
    case 401:
      return { title: 'Please sign in again',
        text: 'Your access token was not accepted (expired, or not a storyq token).' };
    case 402:
      return { title: 'Not enough credits',
        text: state.credits !== null
          ? `A story costs a credit and your balance is ${state.credits}. Add credits, then try again.`
          : 'A story costs a credit and your balance is too low. Add credits, then try again.' };
    case 404:
      return { title: 'Not found', text: error.detail || 'That job or story does not exist.' };
    case 409:
      return { title: error.code === 'job_not_cancellable' ? 'Too late to cancel' : 'Conflict',
        text: error.code === 'job_not_cancellable'
          ? 'The story is already being written (or finished), so it can no longer be cancelled.'
          : error.detail };
    case 413:
      return { title: 'Too long', text: 'The request is too large: shorten the prompt.' };
    case 422: {
      const fields = error.errors.map((e) => `${e.loc[e.loc.length - 1]}: ${e.msg}`);
      return { title: 'Please check the form',
        text: fields.length ? fields.join('; ') : error.detail };
    }
    case 429:
      return { title: 'Too many requests',
        text: seconds !== null ? `Slow down: try again in ${seconds} s.` : 'Slow down and try again shortly.' };
    case 503:
      return { title: 'storyq is temporarily unavailable',
        text: `${error.detail || 'A service it depends on is down.'} Try again in a moment.` };
    default:
      return { title: error.title || `Error ${error.status}`, text: error.detail || error.message };
  }
}

/**
 * Show an error (role=alert) with its code for scripts and tests.
 * @param {unknown} error
 */
function showError(error) {
  const { title, text } = describe(error);
  ui.notice.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = title;
  const span = document.createElement('span');
  span.textContent = ` ${text}`;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'link close';
  close.textContent = 'Dismiss';
  close.addEventListener('click', clearError);
  ui.notice.append(strong, span, close);
  ui.notice.dataset.code = error instanceof StoryqError ? error.code : 'error';
  ui.notice.dataset.status = error instanceof StoryqError ? String(error.status) : '';
  ui.notice.hidden = false;
}

function clearError() {
  ui.notice.hidden = true;
  ui.notice.replaceChildren();
  delete ui.notice.dataset.code;
  delete ui.notice.dataset.status;
}

/** Say something to screen readers (polite). @param {string} text */
function announce(text) {
  ui.status.textContent = text;
}

// ---------------------------------------------------------------------------------------------
// Sign-in

/** The `sub` claim of a JWT, unverified (the API verifies); '' when unreadable. @param {string} token */
function subjectOf(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const payload = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof payload.sub === 'string' ? payload.sub : '';
  } catch {
    return '';
  }
}

/** Load the supabase-js UMD build named by config.supabaseScript, if window.supabase is missing. */
async function loadSupabase() {
  const w = /** @type {any} */ (window);
  if (!config.supabaseUrl || !config.supabaseAnonKey) return null;
  if (!w.supabase && config.supabaseScript) {
    await new Promise((resolve) => {
      const script = document.createElement('script');
      script.src = /** @type {string} */ (config.supabaseScript);
      script.onload = resolve;
      script.onerror = resolve; // fall back to token sign-in
      document.head.append(script);
    });
  }
  if (!w.supabase || typeof w.supabase.createClient !== 'function') return null;
  return w.supabase.createClient(config.supabaseUrl, config.supabaseAnonKey);
}

async function currentToken() {
  if (state.supabase) {
    const { data } = await state.supabase.auth.getSession();
    if (data?.session?.access_token) return data.session.access_token;
  }
  return state.token;
}

function showSignIn() {
  ui.app.hidden = true;
  ui.account.hidden = true;
  ui.signIn.hidden = false;
  ui.passwordForm.hidden = !state.supabase;
  /** @type {HTMLElement} */ (ui.signIn.querySelector('input, textarea:not([hidden])'))?.focus();
}

/** @param {string} token */
function acceptToken(token) {
  state.token = token.trim();
  localStorage.setItem(TOKEN_KEY, state.token);
}

async function signOut() {
  state.signingOut = true;
  for (const controller of state.watchers.values()) controller.abort();
  state.watchers.clear();
  state.token = null;
  localStorage.removeItem(TOKEN_KEY);
  if (state.supabase) {
    try {
      await state.supabase.auth.signOut();
    } catch {
      // offline: the local session is gone anyway
    }
  }
  state.client = null;
  state.userId = '';
  state.credits = null;
  resetList();
  ui.reader.hidden = true;
  showSignIn();
  state.signingOut = false;
}

/** A 401 anywhere: back to sign-in, saying why. @param {unknown} error */
async function onUnauthorized(error) {
  if (state.signingOut || !state.client) return;
  await signOut();
  showError(error);
}

/**
 * Handle an error from any action: 401 signs out, everything else is shown.
 * @param {unknown} error
 */
function fail(error) {
  if (error instanceof DOMException && error.name === 'AbortError') return;
  if (error instanceof StoryqError && error.status === 401) {
    void onUnauthorized(error);
    return;
  }
  showError(error);
}

async function enter() {
  const token = await currentToken();
  state.userId = (token && subjectOf(token)) || 'anonymous';
  state.client = new StoryqClient({
    baseUrl: config.apiBaseUrl || '',
    getToken: currentToken,
    supabase: state.supabase && config.realtime !== false ? state.supabase : null,
  });
  ui.signIn.hidden = true;
  ui.app.hidden = false;
  ui.account.hidden = false;
  ui.who.textContent = `Signed in as ${state.userId.slice(0, 8)}`;
  ui.who.title = state.userId;
  try {
    await refreshCredits();
    await loadJobs(true);
    await resume();
  } catch (error) {
    fail(error);
  }
}

async function refreshCredits() {
  if (!state.client) return;
  const me = await state.client.me();
  if (me === null) {
    state.credits = null;
    ui.credits.hidden = true;
    return;
  }
  if (me.userId) state.userId = me.userId;
  setCredits(me.credits);
}

/** @param {number | null | undefined} credits */
function setCredits(credits) {
  if (typeof credits !== 'number') return;
  state.credits = credits;
  ui.credits.textContent = `${credits} credit${credits === 1 ? '' : 's'}`;
  ui.credits.dataset.credits = String(credits);
  ui.credits.classList.toggle('empty', credits <= 0);
  ui.credits.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Jobs this browser watches (survive a reload)

function watchKey() {
  return `${WATCH_PREFIX}${state.userId}`;
}

/** @returns {Record<string, {prompt?: string, storyId?: string}>} */
function watched() {
  try {
    return JSON.parse(localStorage.getItem(watchKey()) || '{}') || {};
  } catch {
    return {};
  }
}

/** @param {string} jobId @param {{prompt?: string, storyId?: string}} [info] */
function remember(jobId, info) {
  const all = watched();
  all[jobId] = { ...all[jobId], ...info };
  localStorage.setItem(watchKey(), JSON.stringify(all));
}

/** @param {string} jobId */
function forget(jobId) {
  const all = watched();
  if (!(jobId in all)) return;
  delete all[jobId];
  localStorage.setItem(watchKey(), JSON.stringify(all));
}

const PROMPT_PREFIX = 'storyq.prompts.';
const PROMPTS_KEPT = 200;

/** Prompts typed in this browser, to name untitled jobs (the job list carries no prompt). */
function promptsKey() {
  return `${PROMPT_PREFIX}${state.userId}`;
}

/** @returns {Record<string, string>} */
function storedPrompts() {
  try {
    return JSON.parse(localStorage.getItem(promptsKey()) || '{}') || {};
  } catch {
    return {};
  }
}

/** @param {string} jobId @param {string} prompt */
function keepPrompt(jobId, prompt) {
  const all = storedPrompts();
  all[jobId] = prompt.slice(0, 200);
  const ids = Object.keys(all);
  for (const old of ids.slice(0, Math.max(0, ids.length - PROMPTS_KEPT))) delete all[old];
  try {
    localStorage.setItem(promptsKey(), JSON.stringify(all));
  } catch {
    // storage full or disabled: the row is just "Untitled story" after a reload
  }
}

/** @param {string} jobId */
function promptOf(jobId) {
  return storedPrompts()[jobId] || watched()[jobId]?.prompt || '';
}

/** Watch every job still waiting or running: the API's list, and what localStorage kept. */
async function resume() {
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
function watch(jobId) {
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
    });
}

/** @param {Job} job */
function announceChange(job) {
  const name = titleOf(job);
  const text = {
    pending: `“${name}” is back in the queue.`,
    processing: `“${name}” is being written.`,
    completed: `“${name}” is ready to read.`,
    failed: `“${name}” could not be written.`,
    cancelled: `“${name}” was cancelled.`,
  }[job.status];
  announce(text);
}

// ---------------------------------------------------------------------------------------------
// The list

function resetList() {
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
async function loadJobs(reset) {
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
function sortRows() {
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
function upsert(job, { prepend = false } = {}) {
  const previous = state.jobs.get(job.jobId);
  // A list entry has no waitTime/progress: keep the sections the job's own view had.
  const merged = previous && previous.status === job.status
    ? { ...previous, ...job, waitTime: job.waitTime ?? previous.waitTime, progress: job.progress ?? previous.progress }
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
function removeRow(jobId) {
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
  cancel.addEventListener('click', () => cancelJob(jobId, cancel));
  return row;
}

/** @param {Job} job */
function titleOf(job) {
  if (job.title) return job.title;
  const prompt = promptOf(job.jobId);
  if (prompt) return prompt.length > 60 ? `${prompt.slice(0, 57)}…` : prompt;
  return 'Untitled story';
}

/** @param {string | null | undefined} iso */
function timeOf(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

/** @param {number} minutes */
function eta(minutes) {
  if (minutes <= 1) return 'about a minute';
  if (minutes < 90) return `about ${minutes} min`;
  return `about ${Math.round(minutes / 60)} h`;
}

/** The line under a job's title. @param {Job} job */
function detailOf(job) {
  const attempt = job.attempts > 1 ? ` · attempt ${job.attempts} of ${job.maxAttempts}` : '';
  switch (job.status) {
    case 'pending': {
      const wait = job.waitTime;
      const retry = job.attempts > 0 ? 'Waiting to retry' : 'Waiting in the queue';
      if (!wait) return `${retry}${attempt}`;
      const where = wait.position <= 0
        ? 'Next in line'
        : `Position ${wait.position + 1}${wait.queueLength ? ` of ${wait.queueLength}` : ''} in the queue`;
      return `${where} · ${eta(wait.estimatedMinutes)}${attempt}`;
    }
    case 'processing': {
      const progress = job.progress;
      if (!progress || !progress.words) return `Writing…${attempt}`;
      return `Writing… ${progress.words.toLocaleString()} words (${progress.percent} %)${attempt}`;
    }
    case 'completed': {
      const words = job.result?.words;
      const seconds = job.result?.generationTime;
      const parts = [];
      if (words) parts.push(`${words.toLocaleString()} words`);
      if (typeof seconds === 'number') parts.push(`written in ${formatDuration(seconds)}`);
      parts.push(`finished ${timeOf(job.finishedAt)}`);
      return parts.join(' · ');
    }
    case 'failed':
      return `${job.error?.message || 'The story could not be written'}${job.refunded ? ' · credit refunded' : ''}`;
    case 'cancelled':
      return `Cancelled${job.refunded ? ' · credit refunded' : ''}`;
    default:
      return '';
  }
}

/** @param {number} seconds */
function formatDuration(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  return `${Math.round(seconds / 60)} min`;
}

/** Redraw one row from state. @param {string} jobId */
function render(jobId) {
  const row = state.rows.get(jobId);
  const job = state.jobs.get(jobId);
  if (!row || !job) return;
  row.dataset.status = job.status;
  const title = /** @type {HTMLElement} */ (row.querySelector('.job-title'));
  title.textContent = titleOf(job);
  const badge = /** @type {HTMLElement} */ (row.querySelector('.badge'));
  badge.textContent = STATUS_LABEL[job.status] || job.status;
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
  read.hidden = job.status !== 'completed';
  read.setAttribute('aria-label', `Read ${titleOf(job)}`);
  const cancel = /** @type {HTMLButtonElement} */ (row.querySelector('.cancel'));
  cancel.hidden = job.status !== 'pending';
  cancel.setAttribute('aria-label', `Cancel ${titleOf(job)}`);
}

/** @param {string} jobId @param {HTMLButtonElement} button */
async function cancelJob(jobId, button) {
  if (!state.client) return;
  button.disabled = true;
  clearError();
  try {
    const job = await state.client.cancel(jobId);
    state.watchers.get(jobId)?.abort();
    state.watchers.delete(jobId);
    forget(jobId);
    upsert(job);
    announce(`“${titleOf(job)}” was cancelled${job.refunded ? ' and your credit refunded' : ''}.`);
    await refreshCredits();
  } catch (error) {
    if (error instanceof StoryqError && error.status === 409) {
      // It started in the meantime: show where it is now.
      state.client.getJob(jobId).then((job) => upsert(job)).catch(() => {});
    }
    fail(error);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Generate

/** @returns {GenerateRequest | null} */
function readForm() {
  const data = new FormData(ui.form);
  const prompt = String(data.get('prompt') || '').trim();
  ui.prompt.setAttribute('aria-invalid', String(!prompt));
  if (!prompt) {
    showError(new StoryqError({ status: 422, code: 'validation_error', title: 'Please check the form',
      errors: [{ loc: ['body', 'prompt'], msg: 'write a prompt first' }] }));
    ui.prompt.focus();
    return null;
  }
  /** @type {GenerateRequest} */
  const body = { prompt };
  const title = String(data.get('title') || '').trim();
  const genre = String(data.get('genre') || '').trim();
  const language = String(data.get('language') || '').trim();
  const words = Number(data.get('targetWords'));
  if (title) body.title = title;
  if (genre) body.genre = genre;
  if (language) body.language = language;
  if (Number.isFinite(words) && words > 0) body.targetWords = Math.round(words);
  return body;
}

/** Block Generate until a 429's Retry-After has passed, counting down. @param {number} ms */
function blockGenerate(ms) {
  state.blockedUntil = Date.now() + ms;
  clearInterval(state.blockTimer);
  const tick = () => {
    const left = Math.ceil((state.blockedUntil - Date.now()) / 1000);
    if (left <= 0) {
      clearInterval(state.blockTimer);
      ui.generate.disabled = false;
      ui.generateHint.textContent = '';
      return;
    }
    ui.generate.disabled = true;
    ui.generateHint.textContent = `You can generate again in ${left} s.`;
  };
  tick();
  state.blockTimer = setInterval(tick, 1000);
}

/** @param {SubmitEvent} event */
async function onGenerate(event) {
  event.preventDefault();
  if (!state.client || ui.generate.disabled) return;
  clearError();
  const body = readForm();
  if (!body) return;
  ui.generate.disabled = true;
  ui.generateHint.textContent = 'Queuing…';
  // One key per click: a retry of this click (network trouble) cannot queue or charge twice.
  const idempotencyKey = newIdempotencyKey();
  try {
    let accepted;
    for (let attempt = 0; ; attempt += 1) {
      try {
        accepted = await state.client.generate(body, { idempotencyKey });
        break;
      } catch (error) {
        if (!(error instanceof StoryqError) || error.status !== 0 || attempt >= 2) throw error;
        ui.generateHint.textContent = 'Connection trouble, retrying…';
        await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** attempt));
      }
    }
    keepPrompt(accepted.jobId, body.prompt);
    remember(accepted.jobId, { storyId: accepted.storyId });
    setCredits(accepted.creditsRemaining);
    const now = new Date().toISOString();
    upsert({
      jobId: accepted.jobId, storyId: accepted.storyId, title: body.title ?? null,
      status: 'pending', attempts: 0, maxAttempts: 3, createdAt: now, startedAt: null,
      finishedAt: null, waitTime: accepted.estimatedWaitTime,
    }, { prepend: true });
    watch(accepted.jobId);
    ui.prompt.value = '';
    updateCount();
    const wait = accepted.estimatedWaitTime;
    const where = wait ? ` Position ${wait.position + 1} in the queue, ${eta(wait.estimatedMinutes)}.` : '';
    const said = accepted.replayed ? 'Already queued.' : 'Queued.';
    ui.generateHint.textContent = said;
    setTimeout(() => {
      if (ui.generateHint.textContent === said) ui.generateHint.textContent = '';
    }, 5000);
    announce(`Story queued.${where}`);
    if (accepted.creditsRemaining === undefined) refreshCredits().catch(() => {});
  } catch (error) {
    ui.generateHint.textContent = '';
    fail(error);
    if (error instanceof StoryqError && error.status === 429) {
      blockGenerate(error.retryAfterMs ?? 10_000);
      return;
    }
    if (error instanceof StoryqError && error.status === 402) refreshCredits().catch(() => {});
  } finally {
    if (Date.now() >= state.blockedUntil) ui.generate.disabled = false;
  }
}

function updateCount() {
  ui.promptCount.textContent = `${ui.prompt.value.length} / 4000`;
}

// ---------------------------------------------------------------------------------------------
// The reader

/** @param {string} storyId */
async function openStory(storyId) {
  if (!state.client) return;
  const story = await state.client.getStory(storyId);
  ui.storyTitle.textContent = story.title || 'Untitled story';
  const meta = [];
  if (story.words) meta.push(`${story.words.toLocaleString()} words`);
  if (story.genre) meta.push(story.genre);
  if (story.language) meta.push(story.language);
  if (story.completedAt) meta.push(`written ${timeOf(story.completedAt)}`);
  ui.storyMeta.textContent = meta.join(' · ');
  ui.storyPrompt.textContent = story.prompt;
  ui.storyContent.replaceChildren();
  ui.storyContent.lang = story.language || '';
  if (story.content) {
    for (const block of story.content.split(/\n\s*\n/)) {
      const text = block.trim();
      if (!text) continue;
      const heading = /^#{1,6}\s+/.exec(text);
      const el = document.createElement(heading ? 'h3' : 'p');
      el.textContent = heading ? text.slice(heading[0].length) : text;
      ui.storyContent.append(el);
    }
  } else {
    const p = document.createElement('p');
    p.className = 'hint';
    p.textContent = story.status === 'pending'
      ? 'This story is not written yet.'
      : 'This story has no text.';
    ui.storyContent.append(p);
  }
  ui.reader.dataset.storyId = story.storyId;
  ui.reader.hidden = false;
  ui.storyTitle.focus();
  ui.reader.scrollIntoView({ block: 'start' });
}

// ---------------------------------------------------------------------------------------------
// Wiring

function bind() {
  ui.tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const field = /** @type {HTMLTextAreaElement} */ (ui.tokenForm.elements.namedItem('token'));
    const token = field.value.trim();
    if (!token) return;
    clearError();
    acceptToken(token);
    field.value = '';
    enter().catch(fail);
  });
  ui.passwordForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!state.supabase) return;
    const form = new FormData(ui.passwordForm);
    clearError();
    const { error } = await state.supabase.auth.signInWithPassword({
      email: String(form.get('email') || ''), password: String(form.get('password') || ''),
    });
    if (error) {
      showError(new StoryqError({ status: 401, code: 'sign_in_failed', title: 'Sign-in failed',
        detail: error.message }));
      return;
    }
    enter().catch(fail);
  });
  ui.signOut.addEventListener('click', () => {
    clearError();
    void signOut();
  });
  ui.form.addEventListener('submit', onGenerate);
  ui.prompt.addEventListener('input', () => {
    updateCount();
    if (ui.prompt.value.trim()) ui.prompt.removeAttribute('aria-invalid');
  });
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
  ui.closeReader.addEventListener('click', () => {
    ui.reader.hidden = true;
    const id = ui.reader.dataset.storyId;
    const job = [...state.jobs.values()].find((j) => j.storyId === id);
    const row = job && state.rows.get(job.jobId);
    /** @type {HTMLElement | null | undefined} */ (row?.querySelector('.read'))?.focus();
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !ui.reader.hidden) ui.closeReader.click();
  });
}

async function main() {
  bind();
  // ?token=… signs in (handy with the link `make dev` prints); drop it from the address bar.
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    acceptToken(fromUrl);
    url.searchParams.delete('token');
    window.history.replaceState(null, '', `${url.pathname}${url.search}${url.hash}`);
  } else {
    state.token = localStorage.getItem(TOKEN_KEY);
  }
  try {
    state.supabase = await loadSupabase();
  } catch {
    state.supabase = null;
  }
  if (state.supabase) {
    state.supabase.auth.onAuthStateChange((/** @type {string} */ event) => {
      if (event === 'SIGNED_OUT' && state.client && !state.signingOut) void signOut();
    });
  }
  if (await currentToken()) {
    await enter();
  } else {
    showSignIn();
  }
  document.documentElement.dataset.ready = 'true';
}

main().catch(fail);
