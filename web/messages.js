// @ts-check
/** What the page tells the user: the error notice (role=alert) and screen-reader announcements. */

import { StoryqError } from './storyq-client.js';
import { state, ui } from './state.js';

/**
 * What to tell the user about an error, in plain words.
 * @param {unknown} error
 * @returns {{title: string, text: string}}
 */
export function describe(error) {
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
      return { title: error.code === 'job_not_cancellable' ? 'Already finished' : 'Conflict',
        text: error.code === 'job_not_cancellable'
          ? 'The story was finished (or failed) before it could be cancelled: nothing was stopped.'
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
export function showError(error) {
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

export function clearError() {
  ui.notice.hidden = true;
  ui.notice.replaceChildren();
  delete ui.notice.dataset.code;
  delete ui.notice.dataset.status;
}

/** Say something to screen readers (polite). @param {string} text */
export function announce(text) {
  ui.status.textContent = text;
}
