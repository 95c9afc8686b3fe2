// @ts-check
/** How a job and its times read on the page: its title, the line under it, clock times, ETAs, spans and costs. */

import { promptOf } from './storage.js';

/** @typedef {import('./storyq-client.js').Job} Job */

/** @param {Job} job */
export function titleOf(job) {
  if (job.title) return job.title;
  const prompt = promptOf(job.jobId);
  if (prompt) return prompt.length > 60 ? `${prompt.slice(0, 57)}…` : prompt;
  return 'Untitled story';
}

/** @param {string | null | undefined} iso */
export function timeOf(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : date.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

/** @param {number} minutes */
export function eta(minutes) {
  if (minutes <= 1) return 'about a minute';
  if (minutes < 90) return `about ${minutes} min`;
  return `about ${Math.round(minutes / 60)} h`;
}

/** The line under a job's title. @param {Job} job */
export function detailOf(job) {
  const attempt = job.attempts > 1 ? ` · attempt ${job.attempts} of ${job.maxAttempts}` : '';
  switch (job.status) {
    case 'pending': {
      const wait = job.waitTime;
      const retry = job.attempts > 0 ? 'Waiting to retry' : 'Waiting in the queue';
      if (!wait) return `${retry}${attempt}`;
      const where = wait.atUserCap
        ? 'Waiting for one of your running stories to finish (your plan\'s limit)'
        : wait.position <= 0
          ? 'Next in line'
          : `Position ${wait.position + 1}${wait.queueLength ? ` of ${wait.queueLength}` : ''} in the queue`;
      return `${where} · ${eta(wait.estimatedMinutes)}${attempt}`;
    }
    case 'processing': {
      const progress = job.progress;
      const doing = job.cancelRequested ? 'Stopping…' : 'Writing…';
      if (!progress || !progress.words) return `${doing}${attempt}`;
      return `${doing} ${progress.words.toLocaleString()} words (${progress.percent} %)${attempt}`;
    }
    case 'completed': {
      const words = job.result?.words;
      const seconds = job.result?.generationTime;
      const parts = [];
      if (words) parts.push(`${words.toLocaleString()} words`);
      if (typeof seconds === 'number') parts.push(`written in ${formatDuration(seconds)}`);
      parts.push(`finished ${timeOf(job.finishedAt)}`);
      const usage = job.result?.usage;
      if (usage) {
        const tokens = (usage.promptTokens ?? 0) + (usage.completionTokens ?? 0);
        parts.push(`${tokens.toLocaleString()} tokens ($${(usage.costUsd ?? 0).toFixed(4)})`);
      }
      return parts.join(' · ');
    }
    case 'failed':
      return `${job.error?.message || 'The story could not be written'}${job.refunded ? ' · credit refunded' : ''}`;
    case 'cancelled': {
      const how = {
        user: job.startedAt ? 'Stopped' : 'Cancelled',
        admin: 'Cancelled by an admin',
        expired: 'Expired in the queue',
      }[job.cancelReason ?? 'user'] ?? 'Cancelled';
      return `${how}${job.refunded ? ' · credit refunded' : ''}`;
    }
    default:
      return '';
  }
}

/** @param {number} seconds */
function formatDuration(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  return `${Math.round(seconds / 60)} min`;
}

/** A date and time to the second, for the operator's tables. @param {string | null | undefined} iso */
export function instantOf(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'medium' });
}

/** A span of time, as precise as it is short: 5.2 s, 42 s, 4 min 30 s, 2 h 5 min. @param {number} seconds */
export function spanOf(seconds) {
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 3600) {
    const rest = Math.round(s % 60);
    return `${Math.floor(s / 60)} min${rest ? ` ${rest} s` : ''}`;
  }
  const minutes = Math.round((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h${minutes ? ` ${minutes} min` : ''}`;
}

/** US dollars to a hundredth of a cent (LLM costs are small). @param {number} usd */
export function dollarsOf(usd) {
  return `$${usd.toFixed(4)}`;
}
