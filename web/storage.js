// @ts-check
/**
 * What this browser keeps per user in localStorage, so a reload can pick up where it was: the
 * jobs it watches and the prompts typed here. (The pasted token is account.js's.)
 */

import { state } from './state.js';

const WATCH_PREFIX = 'storyq.watching.';

function watchKey() {
  return `${WATCH_PREFIX}${state.userId}`;
}

/** @returns {Record<string, {prompt?: string, storyId?: string}>} */
export function watched() {
  try {
    return JSON.parse(localStorage.getItem(watchKey()) || '{}') || {};
  } catch {
    return {};
  }
}

/** @param {string} jobId @param {{prompt?: string, storyId?: string}} [info] */
export function remember(jobId, info) {
  const all = watched();
  all[jobId] = { ...all[jobId], ...info };
  localStorage.setItem(watchKey(), JSON.stringify(all));
}

/** @param {string} jobId */
export function forget(jobId) {
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
export function keepPrompt(jobId, prompt) {
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
export function promptOf(jobId) {
  return storedPrompts()[jobId] || watched()[jobId]?.prompt || '';
}
