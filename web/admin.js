// @ts-check
/**
 * The operator page: shown to admin tokens only (GET /api/me's `isAdmin`), in place of the
 * user's page, by the address's hash: `#admin` is the queue, its actions and the job browser,
 * `#admin/job/<id>` one job's page. Anyone else who opens those addresses is told it is for
 * admins only (the API would answer them 403 anyway).
 *
 * Each view refreshes itself while it is shown and the tab is visible: the queue and the page
 * of jobs shown every `adminRefreshMs` (10 s), an unfinished job's page every
 * `adminJobRefreshMs` (2 s). Only one timer runs at a time; leaving a view stops it and
 * abandons its reads.
 */

import { StoryqError } from './storyq-client.js';
import { fail } from './account.js';
import { adminState, adminUi } from './admin-ui.js';
import { bindQueueActions } from './admin-actions.js';
import { bindJobBrowser, loadJobPage, resetJobBrowser } from './admin-jobs.js';
import { bindJobPage, clearJobPage, openJob } from './admin-job.js';
import { bindQueue, loadQueue } from './admin-queue.js';
import { closeStory } from './reader.js';
import { config, state, ui } from './state.js';

const QUEUE_HASH = '#admin';
const JOB_HASH = '#admin/job/';
const TITLE = 'storyq';

/** @typedef {{view: 'queue'} | {view: 'job', jobId: string}} AdminRoute */

/** The operator view the address names, or null for the user's page. @returns {AdminRoute | null} */
export function adminRoute(hash = window.location.hash) {
  if (hash === QUEUE_HASH || hash === `${QUEUE_HASH}/`) return { view: 'queue' };
  if (hash.startsWith(JOB_HASH) && hash.length > JOB_HASH.length) {
    const raw = hash.slice(JOB_HASH.length);
    let jobId = raw;
    try {
      jobId = decodeURIComponent(raw);
    } catch {
      // a mangled link: the API answers that no such job exists
    }
    return { view: 'job', jobId };
  }
  return null;
}

/** The address of a job's page. @param {string} jobId */
export function jobHref(jobId) {
  return `${JOB_HASH}${encodeURIComponent(jobId)}`;
}

/** What /api/me said: the views' links appear for admins only. @param {boolean} isAdmin */
export function setAdmin(isAdmin) {
  adminState.isAdmin = isAdmin;
  adminUi.views.hidden = !isAdmin;
}

/** Show what the address names: the user's page, an operator view, or "Admins only". */
export function showRoute() {
  if (!state.client) return; // signed out: the sign-in form is what shows
  stopView();
  const route = adminRoute();
  markCurrentView(route);
  if (!route) {
    hideAdmin();
    ui.app.hidden = false;
    return;
  }
  closeStory();
  ui.app.hidden = true;
  if (!adminState.isAdmin) {
    showDenied();
    return;
  }
  adminUi.denied.hidden = true;
  adminUi.admin.hidden = false;
  adminUi.main.classList.add('wide');
  const onQueue = route.view === 'queue';
  adminUi.queue.hidden = !onQueue;
  adminUi.queueActions.hidden = !onQueue;
  adminUi.browser.hidden = !onQueue;
  adminUi.job.hidden = onQueue;
  if (route.view === 'queue') {
    adminState.view = 'queue';
    document.title = `Queue · ${TITLE}`;
    refreshQueueView();
  } else {
    adminState.view = 'job';
    document.title = `Job · ${TITLE}`;
    openJob(route.jobId);
  }
}

/** "Admins only": for a token that is not an admin's, or one the API refused (403). */
export function showDenied() {
  stopView();
  adminState.view = 'denied';
  ui.app.hidden = true;
  adminUi.admin.hidden = true;
  adminUi.main.classList.remove('wide');
  adminUi.denied.hidden = false;
  document.title = `Admins only · ${TITLE}`;
}

/** Signing out: nothing of the operator page stays, and it is forgotten who was an admin. */
export function leaveAdmin() {
  stopView();
  hideAdmin();
  setAdmin(false);
  resetJobBrowser();
  clearJobPage();
  adminState.jobId = null;
}

function hideAdmin() {
  adminState.view = null;
  adminUi.admin.hidden = true;
  adminUi.denied.hidden = true;
  adminUi.main.classList.remove('wide');
  document.title = TITLE;
}

/** @param {AdminRoute | null} route */
function markCurrentView(route) {
  for (const [link, current] of [[adminUi.viewStories, !route], [adminUi.viewAdmin, Boolean(route)]]) {
    const a = /** @type {HTMLAnchorElement} */ (link);
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/** Stop the view's timer and abandon its reads under way. */
function stopView() {
  clearTimeout(adminState.timer);
  adminState.timer = undefined;
  adminState.reads?.abort();
  adminState.reads = null;
}

/** The signal of the shown view's reads (aborted when the view changes). */
export function viewSignal() {
  adminState.reads ??= new AbortController();
  return adminState.reads.signal;
}

/**
 * Run `refresh` again in `ms`, once the tab is visible, unless the view changes first.
 * @param {() => unknown} refresh @param {number} ms
 */
export function refreshLater(refresh, ms) {
  clearTimeout(adminState.timer);
  const view = adminState.view;
  adminState.timer = setTimeout(function tick() {
    if (adminState.view !== view) return;
    if (document.visibilityState !== 'visible') {
      adminState.timer = setTimeout(tick, 1000);
      return;
    }
    refresh();
  }, ms);
}

/** The queue's counts and the job browser's page, read now and again later. */
export function refreshQueueView() {
  Promise.all([loadQueue(), loadJobPage()])
    .catch(adminFail)
    .finally(() => {
      if (adminState.view === 'queue') refreshLater(() => refreshQueueView(), config.adminRefreshMs ?? 10000);
    });
}

/**
 * An operator view's error: a 403 means this token is no admin's after all; the rest as
 * anywhere on the page (a 401 signs out).
 * @param {unknown} error
 */
export function adminFail(error) {
  if (error instanceof StoryqError && error.status === 403) {
    setAdmin(false);
    showDenied();
    return;
  }
  fail(error);
}

export function bindAdmin() {
  bindQueue();
  bindQueueActions();
  bindJobBrowser();
  bindJobPage();
  window.addEventListener('hashchange', () => {
    // An anchor within the page (the "Skip to content" link's #main) is not a view.
    const hash = window.location.hash;
    if (hash && !adminRoute(hash) && document.getElementById(hash.slice(1))) return;
    showRoute();
  });
  // "Skip to content" moves the focus and leaves the address (and so the view) as it is.
  document.querySelector('a.skip')?.addEventListener('click', (event) => {
    event.preventDefault();
    const main = document.getElementById('main');
    if (!main) return;
    main.tabIndex = -1;
    main.focus();
  });
}
