// @ts-check
/** The story view: one finished story, opened from its row and closed back to it. */

import { timeOf } from './format.js';
import { state, ui } from './state.js';

/** @param {string} storyId */
export async function openStory(storyId) {
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

export function bindReader() {
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
