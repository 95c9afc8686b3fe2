"""Typed rows of the store: what goes into the SQL functions and what comes back.

Owns the Python shape of the jsonb objects the functions return (snake_case keys, as in SQL),
the job status vocabulary and the keyset cursor of the job lists. Models ignore keys they
do not know, so adding a column to a function's answer never breaks an older caller.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from storyq.results import JobResult

JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
StoryStatus = Literal["pending", "writing", "ready", "failed", "cancelled"]
CleanableStatus = Literal["completed", "failed", "cancelled"]
# Who cancelled a job (or asked to): its user, an admin, or the waiting TTL.
CancelReason = Literal["user", "admin", "expired"]

TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"completed", "failed", "cancelled"})


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class EnqueueRequest(_Row):
    """One "Generate" click, priced and limited (the API fills cost and limits from Settings)."""

    user_id: UUID
    prompt: str = Field(min_length=1)
    title: str | None = None
    genre: str | None = None
    language: str = "en"
    target_words: int = Field(gt=0)
    cost: int = Field(ge=0)
    max_attempts: int = Field(ge=1)
    idempotency_key: str | None = None
    request_hash: str | None = None
    # The one-time sign-up grant given on the user's first enqueue (FREE_CREDITS).
    free_credits: int = Field(default=0, ge=0)
    # How long the idempotency key is remembered (IDEMPOTENCY_TTL_SECONDS), whatever
    # cleaning does to the job row.
    idempotency_ttl_seconds: float = Field(default=86400.0, gt=0)


class EnqueuedJob(_Row):
    """The answer to an enqueue: the job (new, or the first one for a replayed key, with its
    status as it is now). `fence` is the token of the job's next attempt (None when the replayed
    job's row was cleaned).

    With it, the user's plan (`plans`, from app_metadata.tier): `tier` and `priority` are the
    job's, stamped at enqueue; `weight` (the user's fair share) and `max_active_per_user` (their
    running cap, carried but not enforced yet; None: no cap of its own) are the plan's as it is
    now. The defaults are a
    user with no plan of their own, for answers from before tiers."""

    job_id: UUID
    story_id: UUID
    status: JobStatus
    attempts: int
    fence: int | None = None
    created_at: datetime
    replayed: bool
    balance: int
    tier: str | None = None
    weight: float = 1.0
    priority: int = 0
    max_active_per_user: int | None = None


class StartedJob(_Row):
    """What a worker needs to run an attempt, returned by a successful start: `fence` fences
    every write of the attempt, `attempt` is its number (1 to max_attempts)."""

    job_id: UUID
    story_id: UUID
    user_id: UUID
    prompt: str
    title: str | None
    genre: str | None
    language: str
    target_words: int
    fence: int
    attempt: int
    max_attempts: int


class CompletedJob(_Row):
    job_id: UUID
    story_id: UUID
    status: JobStatus


class Failure(_Row):
    """Why an attempt failed, and whether another attempt may help."""

    code: str
    message: str
    retryable: bool
    retry_delay_seconds: float = Field(default=0.0, ge=0)


class JobState(_Row):
    """A job's state as Postgres has it after a transition, what Redis is made to follow:
    `fence` is the token of its next (pending) or running (processing) attempt. `status` is
    None when the row is gone (cleaned)."""

    job_id: UUID
    user_id: UUID | None = None
    status: JobStatus | None = None
    fence: int | None = None
    attempts: int = 0
    max_attempts: int | None = None
    next_attempt_at: datetime | None = None
    refunded: bool = False

    @property
    def will_retry(self) -> bool:
        """Pending again: another attempt will run (at `next_attempt_at`)."""
        return self.status == "pending"


class FailOutcome(JobState):
    """After a failed or released attempt: pending again under a new fence (with its due
    time), or failed for good (refunded)."""


StartRefusalReason = Literal["capacity", "running", "stale", "finished"]


class StartRefused(JobState):
    """A start Postgres refused, with the job's state: `capacity` (MAX_ACTIVE_JOBS attempts
    run; nothing changed), `running` (this fence already started), `stale` (a newer fence),
    `finished` (completed, failed or cancelled)."""

    reason: StartRefusalReason


LostAttemptOutcome = Literal["requeued", "failed", "live", "unstarted", "superseded", "gone"]


class LostAttempt(JobState):
    """What became of an attempt the sweeper found without a lease or heartbeat (see
    `requeue_stalled_story_job`): `requeued`/`failed` (it was dead: counted as a failed
    attempt), `live` (its heartbeat is fresh), `unstarted` (claimed, never started),
    `superseded` (a newer fence, or finished), `gone` (the row was cleaned)."""

    outcome: LostAttemptOutcome


class Job(_Row):
    """A job row as the API shows it, with its story's title and target length."""

    job_id: UUID
    story_id: UUID
    user_id: UUID
    title: str | None = None
    target_words: int | None = None
    status: JobStatus
    attempts: int
    max_attempts: int
    fence: int
    # The user's plan tier and its priority when the job was enqueued (tier None: before tiers).
    tier: str | None = None
    priority: int = 0
    idempotency_key: str | None = None
    request_hash: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    result: JobResult | None = None
    refunded: bool
    progress_words: int | None = None
    cost: int
    created_at: datetime
    queued_at: datetime
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime
    updated_at: datetime
    # A user or an admin asked to cancel it (a processing job ends cancelled once its worker
    # hears of it).
    cancel_requested: bool = False
    cancel_requested_at: datetime | None = None
    cancel_reason: CancelReason | None = None

    @property
    def cursor(self) -> JobCursor:
        """The cursor that continues a listing after this job."""
        return JobCursor(created_at=self.created_at, job_id=self.job_id)


class RetriedJob(Job):
    """A failed job an admin put back in the queue, with what its re-dispatch needs of the
    user's plan now: `weight` (fair share) and `max_active_per_user` (None: only the global
    cap)."""

    weight: float = 1.0
    max_active_per_user: int | None = None


class JobCursor(_Row):
    """Keyset position in a job list (a user's, or the operator's job browser): the
    (created_at, job_id) of the last job seen."""

    created_at: datetime
    job_id: UUID

    def encode(self) -> str:
        """An opaque, URL-safe string for `nextCursor`."""
        raw = f"{self.created_at.isoformat()}|{self.job_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> JobCursor:
        """The cursor behind `encode`'s string; ValueError when it is not one. Its instant
        comes back in UTC: Postgres refuses offsets beyond 15:59, which a forged one may carry."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            created_at, _, job_id = raw.partition("|")
            instant = datetime.fromisoformat(created_at)
            if instant.tzinfo is None:
                raise ValueError("a cursor's instant has an offset")
            return cls(created_at=instant.astimezone(UTC), job_id=UUID(job_id))
        except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError) as exc:
            raise ValueError("not a job list cursor") from exc


class JobPage(_Row):
    """One page of a user's jobs, newest first; next_cursor is None on the last page."""

    jobs: list[Job]
    next_cursor: JobCursor | None


class Story(_Row):
    """A story row (exists from enqueue on): content is null while pending, the text so far
    while writing, the whole story once ready (failed and cancelled keep what was written)."""

    story_id: UUID
    job_id: UUID | None
    user_id: UUID
    title: str | None
    prompt: str
    genre: str | None
    language: str
    target_words: int
    status: StoryStatus
    content: str | None
    words: int | None
    created_at: datetime
    completed_at: datetime | None
    updated_at: datetime


class DispatchableJob(_Row):
    """A pending job to put (back) into the Redis queue under `fence`; next_attempt_at may be in
    the future. `weight` and `max_active_per_user` are those of the user's plan now (None: only
    the global cap); `priority` is the job's, from its enqueue."""

    job_id: UUID
    user_id: UUID
    fence: int
    attempts: int
    queued_at: datetime
    next_attempt_at: datetime
    priority: int
    weight: float = 1.0
    max_active_per_user: int | None = None


class StalledJob(_Row):
    """A processing attempt (`fence`, number `attempt`) and its last heartbeat."""

    job_id: UUID
    user_id: UUID
    fence: int
    attempt: int
    heartbeat_at: datetime


@dataclass(frozen=True)
class Heartbeat:
    """One attempt's beat for `JobStore.heartbeat_many`: its job, its fence and the words
    written so far (None leaves the recorded count as it is)."""

    job_id: UUID
    fence: int
    words: int | None = None


class WalkPlace(_Row):
    """Where a walk over the pending jobs stands: after the job `job_id` queued at `queued_at`
    (queue order); both None: at the head (`WalkPlace.HEAD`)."""

    queued_at: datetime | None = None
    job_id: UUID | None = None

    HEAD: ClassVar[WalkPlace]

    def as_param(self) -> dict[str, str]:
        if self.queued_at is None or self.job_id is None:
            return {}
        return {"queued_at": self.queued_at.isoformat(), "job_id": str(self.job_id)}


WalkPlace.HEAD = WalkPlace()


@dataclass(frozen=True)
class BeatReply:
    """Postgres's answer to a recorded beat: the attempt still owns its job, and whether a
    cancel was requested (its worker must stop the generation and cancel the job)."""

    job_id: UUID
    fence: int
    cancel: bool


@dataclass(frozen=True)
class AttemptUsage:
    """What one attempt (`job_id`, `fence`) used, for `JobStore.record_usage`: the attempt's
    totals over every model it tried (recording again replaces them), their cost in US dollars,
    and whether the worker counted the tokens itself (`estimated`: the provider sent none)."""

    job_id: UUID
    fence: int
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    estimated: bool

    def as_param(self) -> dict[str, object]:
        return {
            "job_id": str(self.job_id),
            "fence": self.fence,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "estimated": self.estimated,
        }


@dataclass(frozen=True)
class TextWrite:
    """What an attempt has written since its story last stored: `text` goes at character
    `text_from` of the story (`JobStore.write_texts`)."""

    job_id: UUID
    fence: int
    text_from: int
    text: str


class DispatchSnapshot(_Row):
    """What Redis is rebuilt from, read in one Postgres snapshot: a job that starts meanwhile is
    in exactly one of the two lists."""

    running: list[StalledJob]
    pending: list[DispatchableJob]
    # The walk over every pending job reached the tail with this snapshot's page.
    wrapped: bool = False
    # The page's last job: where the next page of a walk of the caller's own starts.
    last: WalkPlace | None = None


class TierCounts(_Row):
    """Jobs waiting and running of one tier (the tier at enqueue; `(none)`: before tiers)."""

    tier: str
    pending: int
    processing: int


class QueueCounts(_Row):
    """Jobs per status, the oldest pending job, the mean generation time (last 100), the
    tokens and cost of the attempts started today (UTC), and waiting and running per tier
    (tiers with neither left out)."""

    pending: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    avg_generation_seconds: float | None
    oldest_pending_at: datetime | None
    prompt_tokens_today: int = 0
    completion_tokens_today: int = 0
    cost_usd_today: float = 0.0
    by_tier: list[TierCounts] = Field(default_factory=list)
