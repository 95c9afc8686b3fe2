// @ts-check
/** The operator's queue: counts by status and tier, slots, timing, the provider, today's usage. */

import { refreshQueueView, viewSignal } from './admin.js';
import { adminState, adminUi } from './admin-ui.js';
import { dollarsOf, instantOf, spanOf } from './format.js';
import { state } from './state.js';

/** @typedef {import('./storyq-client.js').QueueStats} QueueStats */
/** @typedef {import('./storyq-client.js').ProviderPause} ProviderPause */

/** The last counts read, for the confirmations that quote them. @type {QueueStats | null} */
let last = null;

export function lastQueueStats() {
  return last;
}

export async function loadQueue() {
  if (!state.client) return;
  const stats = await state.client.adminQueue({ signal: viewSignal() });
  if (adminState.view !== 'queue') return;
  last = stats;
  renderQueue(stats);
}

/** @param {string} name @param {string} text */
function setStat(name, text) {
  const dd = /** @type {HTMLElement | null} */ (adminUi.queue.querySelector(`[data-stat="${name}"]`));
  if (dd) dd.textContent = text;
  return dd;
}

/** @param {number} n */
const count = (n) => n.toLocaleString();

/** @param {QueueStats} stats */
function renderQueue(stats) {
  setStat('waiting', count(stats.waiting));
  setStat('active', count(stats.active));
  setStat('delayed', count(stats.delayed));
  setStat('completed', count(stats.completed));
  setStat('failed', count(stats.failed));
  setStat('cancelled', count(stats.cancelled));
  setStat('held', count(stats.heldByUserCap));
  setStat('slots', `${count(stats.active)} of ${count(stats.maxActive)} in use`);
  setStat('mean', stats.avgGenerationSeconds > 0 ? spanOf(stats.avgGenerationSeconds) : 'no story yet');
  setStat('oldest', oldestText(stats.oldestPendingAt));
  const pause = setStat('pause', pauseText(stats.providerPause));
  pause?.classList.toggle('paused', Boolean(stats.providerPause));
  const tokens = stats.promptTokensToday + stats.completionTokensToday;
  setStat('tokens', `${count(tokens)} (${count(stats.promptTokensToday)} prompt, `
    + `${count(stats.completionTokensToday)} completion)`);
  setStat('cost', dollarsOf(stats.costUsdToday));
  setStat('source', stats.source === 'redis' ? 'Redis (live)' : 'Postgres (Redis did not answer)');
  renderTiers(stats);
  adminUi.queueUpdated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

/** @param {string | null} iso */
function oldestText(iso) {
  if (!iso) return 'none waiting';
  const seconds = (Date.now() - Date.parse(iso)) / 1000;
  return `waiting ${spanOf(seconds)} (since ${instantOf(iso)})`;
}

/** @param {ProviderPause | null} pause */
function pauseText(pause) {
  if (!pause) return 'Not paused';
  const strikes = `${pause.strikes} strike${pause.strikes === 1 ? '' : 's'}`;
  return `Paused until ${instantOf(pause.until)} (${pause.reason}, ${strikes}`
    + `${pause.probing ? ', a probe is out' : ''})`;
}

/** @param {QueueStats} stats */
function renderTiers(stats) {
  const rows = stats.byTier.map((tier) => {
    const tr = document.createElement('tr');
    tr.dataset.tier = tier.tier;
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = tier.tier;
    tr.append(name, cell(count(tier.pending)), cell(count(tier.processing)));
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement('tr');
    const td = cell('Nothing is waiting or running.');
    td.colSpan = 3;
    td.className = 'hint';
    tr.append(td);
    rows.push(tr);
  }
  adminUi.tiers.replaceChildren(...rows);
}

/** @param {string} text */
function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

export function bindQueue() {
  // The counts and the page of jobs shown, read again now (and the timer starts over).
  adminUi.queueRefresh.addEventListener('click', () => refreshQueueView());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && adminState.view === 'queue') refreshQueueView();
  });
}
