// @ts-check
/**
 * What every part of the page shares: the deployment settings, the page's elements and its
 * mutable state. It imports nothing at run time, so it is always loaded before the modules
 * that read it, however they import each other.
 */

/** @typedef {import('./storyq-client.js').StoryqClient} StoryqClient */
/** @typedef {import('./storyq-client.js').Job} Job */

/**
 * @typedef {object} StoryqConfig
 * @property {string} [apiBaseUrl] the API's origin ('' = this page's origin)
 * @property {string} [supabaseUrl]
 * @property {string} [supabaseAnonKey]
 * @property {string} [supabaseScript] URL of supabase-js's UMD build, loaded when Supabase is
 *   configured and window.supabase is missing (default 'vendor/supabase.js', beside the page;
 *   '' loads none)
 * @property {boolean} [realtime] wake watchers through Supabase Realtime (default true)
 * @property {number} [pollMinMs] shortest wait between two polls of a job (default 2000)
 * @property {number} [pollMaxMs] longest wait between two polls of a job (default: the API's
 *   Retry-After decides, 2-30 s)
 * @property {number} [adminRefreshMs] the operator page's queue is read again this often while
 *   it is shown (default 10000)
 * @property {number} [adminJobRefreshMs] an unfinished job's page is read again this often
 *   (default 2000)
 */

/** @type {StoryqConfig} */
export const config = /** @type {any} */ (window).STORYQ_CONFIG || {};

/** @param {string} id @returns {any} */
const $ = (id) => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el;
};

export const ui = {
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

export const state = {
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
  /** @type {Map<string, Set<() => void>>} who waits for the next poll of a job, by job id */
  pollWaiters: new Map(),
  /** @type {AbortController | null} following the open story's text */
  reading: null,
  blockedUntil: 0,
  /** @type {ReturnType<typeof setInterval> | undefined} */
  blockTimer: undefined,
  signingOut: false,
};
