// @ts-check
/** The New story form: reading it, Generate (retried safely on network trouble), and its hints. */

import { StoryqError, newIdempotencyKey } from './storyq-client.js';
import { fail, refreshCredits, setCredits } from './account.js';
import { eta } from './format.js';
import { upsert } from './job-list.js';
import { announce, clearError, showError } from './messages.js';
import { state, ui } from './state.js';
import { keepPrompt, remember } from './storage.js';
import { watch } from './watchers.js';

/** @typedef {import('./storyq-client.js').GenerateRequest} GenerateRequest */

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

export function bindGenerateForm() {
  ui.form.addEventListener('submit', onGenerate);
  ui.prompt.addEventListener('input', () => {
    updateCount();
    if (ui.prompt.value.trim()) ui.prompt.removeAttribute('aria-invalid');
  });
}
