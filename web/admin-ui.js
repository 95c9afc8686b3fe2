// @ts-check
/**
 * The operator page's elements and the state its parts share (as state.js is for the user's
 * page). It imports nothing at run time, so it is loaded before the modules that read it.
 */

/** @typedef {import('./storyq-client.js').AdminJobFilters} AdminJobFilters */
/** @typedef {import('./storyq-client.js').AdminJobDetail} AdminJobDetail */

/** @param {string} id @returns {any} */
const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el;
};

export const adminUi = {
  main: /** @type {HTMLElement} */ ($('main')),
  views: /** @type {HTMLElement} */ ($('views')),
  viewStories: /** @type {HTMLAnchorElement} */ ($('view-stories')),
  viewAdmin: /** @type {HTMLAnchorElement} */ ($('view-admin')),
  denied: /** @type {HTMLElement} */ ($('admin-denied')),
  admin: /** @type {HTMLElement} */ ($('admin')),
  queue: /** @type {HTMLElement} */ ($('queue')),
  queueUpdated: /** @type {HTMLElement} */ ($('queue-updated')),
  queueRefresh: /** @type {HTMLButtonElement} */ ($('queue-refresh')),
  tiers: /** @type {HTMLTableSectionElement} */ ($('tiers').tBodies[0]),
  queueActions: /** @type {HTMLElement} */ ($('queue-actions')),
  emptyQueue: /** @type {HTMLButtonElement} */ ($('empty-queue')),
  emptyResult: /** @type {HTMLElement} */ ($('empty-result')),
  cleanForm: /** @type {HTMLFormElement} */ ($('clean-form')),
  cleanResult: /** @type {HTMLElement} */ ($('clean-result')),
  creditsForm: /** @type {HTMLFormElement} */ ($('credits-form')),
  creditsResult: /** @type {HTMLElement} */ ($('credits-result')),
  browser: /** @type {HTMLElement} */ ($('browser')),
  filters: /** @type {HTMLFormElement} */ ($('job-filters')),
  jobsPage: /** @type {HTMLElement} */ ($('jobs-page')),
  jobRows: /** @type {HTMLTableSectionElement} */ ($('admin-jobs').tBodies[0]),
  jobsEmpty: /** @type {HTMLElement} */ ($('admin-jobs-empty')),
  firstPage: /** @type {HTMLButtonElement} */ ($('first-page')),
  previousPage: /** @type {HTMLButtonElement} */ ($('previous-page')),
  nextPage: /** @type {HTMLButtonElement} */ ($('next-page')),
  job: /** @type {HTMLElement} */ ($('admin-job')),
  jobTitle: /** @type {HTMLElement} */ ($('admin-job-title')),
  jobRefresh: /** @type {HTMLButtonElement} */ ($('job-refresh')),
  jobRetry: /** @type {HTMLButtonElement} */ ($('job-retry')),
  jobCancel: /** @type {HTMLButtonElement} */ ($('job-cancel')),
  jobResult: /** @type {HTMLElement} */ ($('job-action-result')),
  jobFields: /** @type {HTMLElement} */ ($('admin-job-fields')),
  attempts: /** @type {HTMLTableSectionElement} */ ($('attempts').tBodies[0]),
  attemptsEmpty: /** @type {HTMLElement} */ ($('attempts-empty')),
  storyMeta: /** @type {HTMLElement} */ ($('admin-story-meta')),
  story: /** @type {HTMLElement} */ ($('admin-story')),
  confirm: /** @type {HTMLDialogElement} */ ($('confirm')),
  confirmTitle: /** @type {HTMLElement} */ ($('confirm-title')),
  confirmText: /** @type {HTMLElement} */ ($('confirm-text')),
  confirmOk: /** @type {HTMLButtonElement} */ ($('confirm-ok')),
};

export const adminState = {
  /** @type {boolean} whether /api/me said the token is an admin's */
  isAdmin: false,
  /** @type {'queue' | 'job' | 'denied' | null} the view shown; null: the user's page */
  view: /** @type {'queue' | 'job' | 'denied' | null} */ (null),
  /** @type {AdminJobFilters} the job browser's filters, as last applied */
  filters: {},
  /** @type {(string | null)[]} the cursor of each page up to the one shown (the first: null) */
  cursors: [null],
  /** @type {string | null} the shown page's nextCursor */
  nextCursor: null,
  /** @type {string} the page of jobs drawn last, as JSON (an unchanged page is not redrawn) */
  drawnPage: '',
  /** @type {string | null} the job whose page is shown */
  jobId: null,
  /** @type {AdminJobDetail | null} */
  job: null,
  /** @type {ReturnType<typeof setTimeout> | undefined} the next automatic refresh */
  timer: undefined,
  /** @type {AbortController | null} the reads under way for the view shown */
  reads: null,
};
