"""The JSON the API reads and writes: camelCase on the wire, snake_case in Python.

Request bodies are strict (no coercion: "1200" is not a number) and refuse unknown fields.
Response sections that only some statuses have (waitTime, progress, result, error) are left
unset, and routes answer with `response_model_exclude_unset`, so they are absent, not null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from storyq.store import AttemptOutcome, CancelReason, JobStatus, StoryStatus


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, frozen=True)


class _In(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
        strict=True,
        extra="forbid",
        frozen=True,
    )


# PostgreSQL text cannot hold U+0000: refuse it here (422) rather than fail in the database.
Text = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[^\x00]*$")]


class GenerateRequest(_In):
    """POST /api/generate."""

    prompt: Annotated[Text, StringConstraints(min_length=1, max_length=4000)]
    title: Annotated[Text, StringConstraints(min_length=1, max_length=200)] | None = None
    genre: Annotated[Text, StringConstraints(min_length=1, max_length=50)] | None = None
    language: Annotated[
        str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$", max_length=35)
    ] = "en"
    target_words: Annotated[int, Field(ge=100, le=5000)] = 1200


class WaitTime(_Out):
    """Where a waiting job stands: 0-based position, and the ETA in whole minutes.

    The queue is fair-share, not first come first served: a job queued later by a user with
    fewer jobs waiting, or of a higher tier (weight, priority), can be placed ahead, so
    `position` and `estimatedMinutes` can grow; `mayBeOvertaken` is false only once the job is
    next in line for a free slot. `atUserCap`: the user already runs as many jobs as their
    plan's running cap allows, so this job also waits for one of them to end
    (`heldByUserCap`: a claim has reached it and set it aside for that); `ownJobsAhead` counts
    the user's own held jobs ahead of it, and the ETA counts the rounds the cap imposes."""

    position: int
    queue_length: int
    active_jobs: int
    estimated_minutes: int
    may_be_overtaken: bool = True
    at_user_cap: bool = False
    held_by_user_cap: bool = False
    own_jobs_ahead: int = 0


AcceptedStatus = Literal["queued", "processing", "completed", "failed", "cancelled"]


class GenerateAccepted(_Out):
    job_id: UUID
    story_id: UUID
    # "queued" for a new job; a replayed Idempotency-Key answers the job's status as it is now
    # ("queued" only while it waits).
    status: AcceptedStatus = "queued"
    message: str = "Story generation queued successfully"
    # null when Redis could not be reached: the job is safe in Postgres and will be dispatched.
    estimated_wait_time: WaitTime | None
    credits_remaining: int


class Progress(_Out):
    words: int
    percent: int


# storyq.generation.contract.quality_label, in words.
QUALITY = (
    "A length-and-ending check, not a judgement of the writing: `high` when the model ended on "
    "its own (finish reason `stop`) with 80-125 % of the requested words; `medium` when it "
    "ended on its own with 50-160 %, or was stopped otherwise (a length limit, say) after "
    "reaching 80 %; `low` otherwise. Kept, so defined, because frontends already read it."
)


class ResultUsage(_Out):
    """What the story cost in LLM tokens, summed over its attempts (failed ones included)."""

    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = Field(description="US dollars, at the prices the workers are configured with")


class JobResult(_Out):
    generation_time: float | None
    quality: str | None = Field(description=QUALITY)  # storyq.generation.contract.Quality
    words: int | None
    usage: ResultUsage | None = Field(
        default=None,
        description="What the story cost in LLM tokens; absent when no attempt recorded it "
        "(the offline template generator, jobs finished before usage was recorded)",
    )


class JobError(_Out):
    code: str
    message: str


class JobView(_Out):
    job_id: UUID
    story_id: UUID
    title: str | None
    status: JobStatus
    attempts: int
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    wait_time: WaitTime | None = None
    progress: Progress | None = None
    result: JobResult | None = None
    error: JobError | None = None
    refunded: bool | None = None
    # True from a cancel request on (DELETE); a processing job ends cancelled shortly.
    cancel_requested: bool = False
    # Once cancelled: who cancelled it (user, admin) or whether it waited too long (expired).
    cancel_reason: CancelReason | None = None


class JobList(_Out):
    jobs: list[JobView]
    next_cursor: str | None


class StoryView(_Out):
    story_id: UUID
    job_id: UUID | None
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


class Me(_Out):
    user_id: UUID
    credits: int
    is_admin: bool


class ProviderPause(_Out):
    """The provider refused work for load (a 429, or every model overloaded): no claims until
    `until`, then one probe at a time until the provider answers one."""

    until: datetime = Field(description="when claims resume (then one probe at a time)")
    since: datetime | None = Field(description="when this pause began")
    strikes: int = Field(description="pauses in a row whose probe was refused too")
    reason: str = Field(description="the error code that set it: rate_limited, upstream_error")
    probing: bool = Field(description="a probe is out, waiting for the provider's answer")


class TierLoad(_Out):
    """Jobs of one plan tier (the tier at enqueue)."""

    tier: str
    pending: int = Field(description="waiting, retries included")
    processing: int


class QueueStats(_Out):
    """Counts for the admin view. waiting/active/delayed come from Redis, or from Postgres's
    pending/processing counts when Redis cannot be reached (`source` says which)."""

    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int
    cancelled: int
    max_active: int
    avg_generation_seconds: float
    oldest_pending_at: datetime | None
    source: Literal["redis", "postgres"]
    prompt_tokens_today: int = Field(
        description="LLM prompt tokens of the attempts started since midnight UTC"
    )
    completion_tokens_today: int = Field(
        description="LLM completion tokens of the attempts started since midnight UTC"
    )
    cost_usd_today: float = Field(
        description="What those tokens cost in US dollars, at the workers' configured prices"
    )
    by_tier: list[TierLoad] = Field(
        default_factory=list,
        description="waiting and running jobs per plan tier, from Postgres",
    )
    provider_pause: ProviderPause | None = Field(
        default=None,
        description="the provider's pause (back-pressure shared by every worker); null when "
        "there is none or Redis cannot be reached",
    )
    held_by_user_cap: int = Field(
        default=0,
        description="of the waiting jobs, those set aside because their user runs as many "
        "jobs as their plan's max_active_per_user allows (Redis; 0 when unreachable)",
    )


class CleanRequest(_In):
    status: Literal["completed", "failed", "cancelled"]
    older_than_seconds: Annotated[int, Field(ge=0, le=10 * 365 * 86400)] = 0


class CleanResult(_Out):
    status: Literal["completed", "failed", "cancelled"]
    deleted: int


class EmptyResult(_Out):
    cancelled: int
    job_ids: list[UUID]


class CreditGrant(_In):
    user_id: UUID
    amount: Annotated[int, Field(ge=1, le=1_000_000)]


class CreditBalance(_Out):
    user_id: UUID
    credits: int


class AdminJob(_Out):
    """A job in the operator's job browser (any user's). Every field is always there, null
    when it does not apply."""

    job_id: UUID
    story_id: UUID
    user_id: UUID
    title: str | None
    status: JobStatus
    tier: str | None = Field(
        description="the user's plan tier when the job was enqueued; null: enqueued before tiers"
    )
    priority: int = Field(description="the plan's priority at enqueue")
    attempts: int = Field(description="attempts counted so far (claims)")
    max_attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error_code: str | None = Field(description="the last failed attempt's error, if any")
    refunded: bool
    cancel_requested: bool = Field(description="a cancel was asked for (DELETE or an admin)")
    cancel_reason: CancelReason | None
    words: int | None = Field(description="words of the story so far; null before any text")


class AdminJobList(_Out):
    jobs: list[AdminJob]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class AttemptView(_Out):
    """One attempt of a job, as story_job_attempts records it."""

    attempt: int = Field(description="1 to maxAttempts (from 1 again after an admin retry)")
    fence: int = Field(description="the attempt's fencing token: names it")
    started_at: datetime
    ended_at: datetime | None = Field(description="null while it runs")
    outcome: AttemptOutcome | None = Field(
        description="null while it runs; retrying: failed, the job ran again; lost: its worker "
        "went silent; released: given back unused by its worker"
    )
    error_code: str | None = Field(description="retrying, failed and lost attempts only")
    error_message: str | None = Field(
        description="with errorCode; null for attempts that ended before messages were kept"
    )
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float = Field(description="US dollars, at the prices the workers are configured with")
    usage_estimated: bool = Field(
        description="the worker counted the tokens itself: the provider sent no usage"
    )
    usage_recorded_at: datetime | None = Field(
        description="when the worker recorded the usage; null: none recorded, so the zeros "
        "mean unknown, not free"
    )


class AdminJobDetail(AdminJob):
    """One job as an operator inspects it: the job, its request, its story so far and every
    attempt."""

    prompt: str
    genre: str | None
    language: str
    target_words: int
    error_message: str | None = Field(description="with errorCode")
    heartbeat_at: datetime | None = Field(
        description="the running attempt's last heartbeat (a stalled worker's grows old)"
    )
    next_attempt_at: datetime = Field(description="pending: when it may start (a retry's delay)")
    story_status: StoryStatus
    content: str | None = Field(
        description="the story as its row holds it: the text so far while it is written, "
        "null before the first text"
    )
    attempt_history: list[AttemptView] = Field(description="every attempt, oldest first")
