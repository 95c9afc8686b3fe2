// @ts-check
/**
 * Who is signed in: the pasted token or the Supabase session, signing in and out, the header's
 * name and credits (and whether the token is an admin's), and fail(), since a 401 from any
 * action ends the session.
 */

import { StoryqClient, StoryqError } from './storyq-client.js';
import { leaveAdmin, setAdmin, showRoute } from './admin.js';
import { loadJobs, resetList } from './job-list.js';
import { clearError, showError } from './messages.js';
import { closeStory, reopenStory } from './reader.js';
import { config, state, ui } from './state.js';
import { resume } from './watchers.js';

const TOKEN_KEY = 'storyq.token';

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

/** Where the page finds supabase-js by default: beside itself, on its own origin. */
const SUPABASE_SCRIPT = 'vendor/supabase.js';

/**
 * A supabase-js client when Supabase is configured: the UMD build at config.supabaseScript
 * (vendor/supabase.js by default) is loaded first if window.supabase is missing.
 */
async function loadSupabase() {
  const w = /** @type {any} */ (window);
  if (!config.supabaseUrl || !config.supabaseAnonKey) return null;
  const src = config.supabaseScript ?? SUPABASE_SCRIPT;
  if (!w.supabase && src) {
    await new Promise((resolve) => {
      const script = document.createElement('script');
      script.src = src;
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
    await authorizeRealtime(null);
  }
  state.client = null;
  state.userId = '';
  state.credits = null;
  leaveAdmin();
  resetList();
  closeStory();
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
export function fail(error) {
  if (error instanceof DOMException && error.name === 'AbortError') return;
  if (error instanceof StoryqError && error.status === 401) {
    void onUnauthorized(error);
    return;
  }
  showError(error);
}

/**
 * Realtime joins its channels with the Supabase session's token, or else the anon key, under
 * which RLS hides every job: with a pasted token and no session, join with that token.
 * @param {string | null} token
 */
async function authorizeRealtime(token) {
  const realtime = state.supabase?.realtime;
  if (!realtime || typeof realtime.setAuth !== 'function') return;
  try {
    await realtime.setAuth(token || undefined); // undefined: back to the session or anon key
  } catch {
    // Realtime only wakes the watchers early; polling goes on without it
  }
}

async function enter() {
  const token = await currentToken();
  if (token && token === state.token) await authorizeRealtime(token);
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
    showRoute(); // the operator page, when the address names it
    await loadJobs(true);
    await resume();
    reopenStory();
  } catch (error) {
    fail(error);
  }
}

export async function refreshCredits() {
  if (!state.client) return;
  const me = await state.client.me();
  setAdmin(Boolean(me?.isAdmin));
  if (me === null) {
    state.credits = null;
    ui.credits.hidden = true;
    return;
  }
  if (me.userId) state.userId = me.userId;
  setCredits(me.credits);
}

/** @param {number | null | undefined} credits */
export function setCredits(credits) {
  if (typeof credits !== 'number') return;
  state.credits = credits;
  ui.credits.textContent = `${credits} credit${credits === 1 ? '' : 's'}`;
  ui.credits.dataset.credits = String(credits);
  ui.credits.classList.toggle('empty', credits <= 0);
  ui.credits.hidden = false;
}

export function bindAccount() {
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
}

/** Sign in with what the browser has (a ?token= link, a kept token, a Supabase session), or ask. */
export async function startSession() {
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
}
