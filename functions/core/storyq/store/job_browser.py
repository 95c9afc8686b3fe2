"""Typed rows of the operator's job browser: every user's jobs, filtered and paged, and one job
with its story so far and every attempt (supabase/migrations/*_admin_job_browser.sql).

Shapes as the SQL functions return them (snake_case), read by `AdminStore.list_jobs` and
`AdminStore.job_details`; like every store row they ignore keys they do not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from storyq.store.models import Job, JobCursor, JobStatus, StoryStatus

# The name queue_counts gives the tier of jobs enqueued before tiers; the browser filters by it.
NO_TIER: Final = "(none)"

AttemptOutcome = Literal["completed", "retrying", "failed", "released", "cancelled", "lost"]


class JobAttempt(BaseModel):
    """One attempt of a job (a row of story_job_attempts): its number (1 to max_attempts, from
    1 again after an admin retry), its fence, its times, what it came to (`outcome` None while
    it runs), its error (retrying, failed and lost only; `error_message` None for attempts that
    ended before messages were kept) and the LLM usage its worker recorded
    (`usage_recorded_at` None: none recorded, so the zeros mean unknown, not free)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    attempt: int
    fence: int
    started_at: datetime
    ended_at: datetime | None = None
    outcome: AttemptOutcome | None = None
    error_code: str | None = None
    error_message: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    usage_estimated: bool = False
    usage_recorded_at: datetime | None = None


class ListedJob(Job):
    """A job as the browser lists it: the job and its story's word count so far (None before
    the story's first text)."""

    words: int | None = None


class JobDetails(ListedJob):
    """One job as an operator inspects it: the job, its story (`content` and `words` as the
    story row holds them: the text so far while it is written, none yet while pending) and
    every attempt, oldest first."""

    prompt: str
    genre: str | None = None
    language: str
    story_status: StoryStatus
    content: str | None = None
    attempt_history: list[JobAttempt] = Field(default_factory=list)


class ListedJobPage(BaseModel):
    """One page of the browser, newest first; next_cursor is None on the last page."""

    model_config = ConfigDict(frozen=True)

    jobs: list[ListedJob]
    next_cursor: JobCursor | None


@dataclass(frozen=True, kw_only=True)
class JobFilter:
    """Which jobs the browser shows: in any of `statuses` (empty: every status), of `user_id`,
    of `tier` (the tier at enqueue; `NO_TIER`: enqueued before tiers), created at or after
    `created_after` and before `created_before`. None leaves a filter out."""

    statuses: tuple[JobStatus, ...] = ()
    user_id: UUID | None = None
    tier: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
