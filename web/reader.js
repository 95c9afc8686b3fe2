// @ts-check
/**
 * The story view: one story, opened from its row and closed back to it. While the story is
 * written the view follows its text (Supabase Realtime's changes of the story's row, or else a
 * read at each poll of its job); it stays open across a reload (`#story=<id>` in the address).
 */

import { isStoryFinished } from './storyq-client.js';
import { fail } from './account.js';
import { timeOf } from './format.js';
import { state, ui } from './state.js';
import { jobPolled } from './watchers.js';

/** @typedef {import('./storyq-client.js').Story} Story */

const HASH_PREFIX = '#story=';

/** @param {string} storyId */
export async function openStory(storyId) {
  if (!state.client) return;
  stopReading();
  const story = await state.client.getStory(storyId);
  show(story);
  ui.reader.hidden = false;
  window.history.replaceState(null, '', `${HASH_PREFIX}${encodeURIComponent(story.storyId)}`);
  ui.storyTitle.focus();
  ui.reader.scrollIntoView({ block: 'start' });
  if (!isStoryFinished(story.status)) follow(story);
}

/** The story the address names (`#story=<id>`), reopened after a reload. */
export function reopenStory() {
  const { hash } = window.location;
  if (!hash.startsWith(HASH_PREFIX)) return;
  openStory(decodeURIComponent(hash.slice(HASH_PREFIX.length))).catch((error) => {
    dropHash();
    fail(error);
  });
}

/** Stop following the open story's text (closing it, signing out). */
export function stopReading() {
  state.reading?.abort();
  state.reading = null;
}

/** Follow the text while it is written; every read of the API waits for a poll of its job. @param {Story} story */
function follow(story) {
  if (!state.client) return;
  const controller = new AbortController();
  state.reading = controller;
  const jobId = story.jobId;
  state.client
    .watchStory(story.storyId, (next) => {
      if (state.reading === controller) show(next);
    }, {
      signal: controller.signal,
      initial: story,
      nextRead: () => jobPolled(jobId, controller.signal),
    })
    .catch(fail)
    .finally(() => {
      if (state.reading === controller) state.reading = null;
    });
}

/** @param {Story} story */
function show(story) {
  // A story gets its title when it is finished: while it is written, its prompt stands in.
  const prompt = story.prompt.length > 60 ? `${story.prompt.slice(0, 57)}…` : story.prompt;
  ui.storyTitle.textContent = story.title || prompt || 'Untitled story';
  ui.storyMeta.textContent = metaOf(story);
  ui.storyPrompt.textContent = story.prompt;
  ui.storyContent.lang = story.language || '';
  ui.reader.dataset.storyId = story.storyId;
  ui.reader.dataset.status = story.status;
  ui.storyContent.setAttribute('aria-busy', String(!isStoryFinished(story.status)));
  const blocks = storyBlocks(story.content);
  if (!blocks.length) {
    const p = document.createElement('p');
    p.className = 'hint';
    p.textContent = isStoryFinished(story.status)
      ? 'This story has no text.'
      : 'This story is not written yet: its text appears here as it is written.';
    blocks.push(p);
  }
  ui.storyContent.replaceChildren(...blocks);
}

/**
 * A story's text as elements: a paragraph per blank-line-separated block, `#` lines as headings.
 * @param {string | null} content
 * @returns {HTMLElement[]}
 */
export function storyBlocks(content) {
  /** @type {HTMLElement[]} */
  const blocks = [];
  for (const block of (content || '').split(/\n\s*\n/)) {
    const text = block.trim();
    if (!text) continue;
    const heading = /^#{1,6}\s+/.exec(text);
    const el = document.createElement(heading ? 'h3' : 'p');
    el.textContent = heading ? text.slice(heading[0].length) : text;
    blocks.push(el);
  }
  return blocks;
}

/** The line under the title. @param {Story} story */
function metaOf(story) {
  const words = story.words ? `${story.words.toLocaleString()} words` : '';
  switch (story.status) {
    case 'pending':
      return 'Waiting to be written';
    case 'writing':
      return `Being written…${words ? ` ${words} so far` : ''}`;
    case 'cancelled':
      return ['Stopped', words && `${words} written before it was cancelled`].filter(Boolean).join(' · ');
    case 'failed':
      return ['Could not be finished', words && `${words} written`].filter(Boolean).join(' · ');
    default: {
      const meta = [];
      if (words) meta.push(words);
      if (story.genre) meta.push(story.genre);
      if (story.language) meta.push(story.language);
      if (story.completedAt) meta.push(`written ${timeOf(story.completedAt)}`);
      return meta.join(' · ');
    }
  }
}

function dropHash() {
  if (!window.location.hash.startsWith(HASH_PREFIX)) return;
  const { pathname, search } = window.location;
  window.history.replaceState(null, '', `${pathname}${search}`);
}

export function closeStory() {
  stopReading();
  ui.reader.hidden = true;
  dropHash();
}

export function bindReader() {
  ui.closeReader.addEventListener('click', () => {
    closeStory();
    const id = ui.reader.dataset.storyId;
    const job = [...state.jobs.values()].find((j) => j.storyId === id);
    const row = job && state.rows.get(job.jobId);
    /** @type {HTMLElement | null | undefined} */ (row?.querySelector('.read'))?.focus();
  });
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !ui.reader.hidden) ui.closeReader.click();
  });
}
