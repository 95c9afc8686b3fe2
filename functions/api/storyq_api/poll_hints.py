"""When a client should ask about a job again: the `Retry-After` of GET /api/job/{jobId}.

Every poll is billed (the read limit's Upstash commands, plus the position script while the job
waits), so the API says when the next one is worth it, from what it has just read and without
any other query:

- pending, a free slot waiting for it: 2 s (the worker starts it within seconds);
- pending in line: a twentieth of its ETA (`waitTime.estimatedMinutes`, which the queue's
  rolling mean generation time sets), 3-30 s;
- pending for a retry (not in line yet): until the retry is due, 2-30 s; pending without a
  position (Redis could not say): 5 s;
- processing: half the remaining time, extrapolated from the words written (`progress_words`
  against the story's `target_words`) and the time since `started_at`, 2-20 s; so the interval
  shrinks as the end nears, and a story that ends early is seen within 20 s;
- processing with no words yet: half the time it has run, 2-10 s (words usually flow within
  seconds; the queue's mean would cost a Redis read per poll and says less than progress);
- processing with the target reached (a model writing past it): a thirtieth of the time it
  has run, 2-10 s;
- completed, failed, cancelled: none (nothing will change).

Whole seconds (the delta-seconds form), rounded up. The reference client follows the header
(web/storyq-polling.js, `nextPollMs`); bench/client_schedule.py imports these functions to
replicate what the API sends.
"""

from __future__ import annotations

import math
from datetime import datetime

from storyq.queue import Position
from storyq.store import Job

MIN_SECONDS = 2
PENDING_MAX_SECONDS = 30
PROCESSING_MAX_SECONDS = 20
# Before the first words, and after the target: how far apart polls may be at most.
UNSURE_MAX_SECONDS = 10
UNKNOWN_POSITION_SECONDS = 5


def retry_after_seconds(
    job: Job, *, position: Position | None, max_active: int, now: datetime
) -> int | None:
    """The `Retry-After` (seconds) for a GET of `job`, or None for a terminal job. `position`
    is the job's place in line (pending only: None when it is not in line or Redis could not
    say), `max_active` the deployment's slots, `now` an aware datetime."""
    if job.status == "pending":
        retry_in = (job.next_attempt_at - now).total_seconds() if job.attempts else None
        return pending_retry_after(position, max_active=max_active, retry_in_seconds=retry_in)
    if job.status == "processing":
        started = job.started_at or now
        return processing_retry_after(
            elapsed_seconds=(now - started).total_seconds(),
            words=job.progress_words or 0,
            target_words=job.target_words,
        )
    return None


def pending_retry_after(
    position: Position | None, *, max_active: int, retry_in_seconds: float | None = None
) -> int:
    """Seconds until a waiting job is worth asking about again (see the module docstring)."""
    if position is None:
        if retry_in_seconds is not None and retry_in_seconds > 0:
            return _bounded(retry_in_seconds, MIN_SECONDS, PENDING_MAX_SECONDS)
        return UNKNOWN_POSITION_SECONDS
    if not position.may_be_overtaken:  # next in line for a free slot
        return MIN_SECONDS
    return _bounded(position.estimated_minutes * 60 / 20, 3, PENDING_MAX_SECONDS)


def processing_retry_after(*, elapsed_seconds: float, words: int, target_words: int | None) -> int:
    """Seconds until a running job is worth asking about again (see the module docstring)."""
    elapsed = max(0.0, elapsed_seconds)
    if not target_words or words <= 0:
        return _bounded(elapsed / 2, MIN_SECONDS, UNSURE_MAX_SECONDS)
    if words >= target_words:
        return _bounded(elapsed / 30, MIN_SECONDS, UNSURE_MAX_SECONDS)
    remaining = elapsed * (target_words - words) / words
    return _bounded(remaining / 2, MIN_SECONDS, PROCESSING_MAX_SECONDS)


def _bounded(seconds: float, low: int, high: int) -> int:
    return max(low, min(high, math.ceil(seconds)))
