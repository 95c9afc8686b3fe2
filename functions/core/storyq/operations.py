"""The job operations, written once for the API and the `storyq` CLI: Postgres first, then Redis.

Each public operation changes the truth in Postgres (the store's SQL functions), then makes the
Redis mirror follow (the dispatcher's scripts). Once Postgres has committed, a Redis failure
costs the Redis part of the answer (a queue position, an ETA, live counts), never the answer:
it is logged, reported to `on_degraded`, and the sweeper rebuilds the mirror from Postgres.

    operations = JobOperations(store=..., dispatcher=..., kicker=..., settings=settings)
    submitted = await operations.submit(StoryRequest(prompt="..."), user_id=user)

Everything here returns core types (store rows, `Position`, the small results below); the API
turns them into its JSON and the CLI into lines of text.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from uuid import UUID

from storyq.config import Settings
from storyq.kick import WorkerKicker
from storyq.queue import DEFAULT_GENERATION_SECONDS, Dispatcher, Position, ProviderPause
from storyq.store import (
    CleanableStatus,
    EnqueuedJob,
    EnqueueRequest,
    Job,
    JobCursor,
    JobDetails,
    JobFilter,
    ListedJobPage,
    Store,
)

logger = logging.getLogger(__name__)


# A Redis call after a commit gets at most this long (or the HTTP timeout, if shorter).
REDIS_BUDGET_SECONDS = 5.0


def redis_budget(settings: Settings) -> float:
    """Seconds a request waits on Redis (or a kick) before answering without it."""
    return min(settings.http_timeout_seconds, REDIS_BUDGET_SECONDS)


@dataclass(frozen=True, kw_only=True)
class StoryRequest:
    """What a user asks for: the story's prompt and shape (lengths are checked by the caller;
    the API's limits are in its GenerateRequest)."""

    prompt: str
    title: str | None = None
    genre: str | None = None
    language: str = "en"
    target_words: int = 1200

    def fingerprint(self) -> str:
        """sha256 (hex) of the request's canonical JSON, what an Idempotency-Key is bound to:
        two requests for the same story hash alike whatever their key order or spacing. The
        keys are the API's field names, so keys stored before this module existed still match.
        """
        canonical = json.dumps(
            {
                "prompt": self.prompt,
                "title": self.title,
                "genre": self.genre,
                "language": self.language,
                "targetWords": self.target_words,
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Submission:
    """A submitted story: the job (new, or the first one of a replayed Idempotency-Key, with its
    status as it is now), its place in the queue (None when it does not wait, or Redis could
    not say), and whether a worker was woken for it."""

    job: EnqueuedJob
    position: Position | None
    kicked: bool
    # Seconds from the call until the job was saved and queued (the worker's wake-up excluded).
    queued_in_seconds: float


@dataclass(frozen=True)
class JobStanding:
    """A job and, while it waits, its place in the queue (None otherwise, or when Redis could
    not say)."""

    job: Job
    position: Position | None


@dataclass(frozen=True)
class TierLoad:
    """Jobs of one plan tier: `pending` (waiting, retries included) and `processing`."""

    tier: str
    pending: int
    processing: int


@dataclass(frozen=True, kw_only=True)
class QueueStats:
    """The queue at a glance. waiting/active/delayed are Redis's live counts, or Postgres's
    pending/processing when Redis cannot be reached (`source` says which); the rest is
    Postgres's. `avg_generation_seconds` is the mean the ETAs use. The `*_today` figures are
    the LLM tokens and their cost (US dollars) of the attempts started since midnight UTC, as
    the workers recorded them."""

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
    prompt_tokens_today: int
    completion_tokens_today: int
    cost_usd_today: float
    # The provider's pause (Dispatcher.pause): None when there is none or Redis is unreachable.
    provider_pause: ProviderPause | None = None
    # Waiting and running jobs per plan tier (the tier at enqueue), from Postgres.
    by_tier: list[TierLoad] = field(default_factory=list)
    # Of the waiting jobs, those set aside because their user is at their running cap (Redis;
    # 0 when Redis is unreachable).
    held_by_user_cap: int = 0


def worth_a_kick(position: Position | None, *, max_active: int) -> bool:
    """Whether a new worker invocation could start this job now. When every slot is taken, the
    running invocations claim it as slots free up (or the minute's schedule does): a kick then
    would only be throttled by the worker's reserved concurrency and, once too old, land in its
    on-failure queue. Without a position (Redis unreachable) the kick lets a sweep try."""
    if position is None:
        return True
    if position.held or position.at_user_cap:  # it waits for its user's own jobs to end
        return False
    return position.active_jobs + position.position < max_active


class JobOperations:
    """The operations over one store, dispatcher and kicker (built once per process)."""

    def __init__(
        self,
        *,
        store: Store,
        dispatcher: Dispatcher,
        kicker: WorkerKicker,
        settings: Settings,
        on_degraded: Callable[[str], None] | None = None,
    ) -> None:
        """`on_degraded(operation)` is told of each Redis call that failed after a commit (the
        API counts them as a metric)."""
        self.store = store
        self.dispatcher = dispatcher
        self.kicker = kicker
        self.settings = settings
        self.redis_timeout = redis_budget(settings)
        self._on_degraded = on_degraded

    # The operations a user's request runs.

    async def submit(
        self, story: StoryRequest, *, user_id: UUID, idempotency_key: str | None = None
    ) -> Submission:
        """Debit, save and queue a story; wake a worker when a slot is free for it.

        A replayed `idempotency_key` (same user, same story, within IDEMPOTENCY_TTL_SECONDS)
        returns the first job as it is now, debits nothing and wakes no one; the job goes back
        into Redis if Redis lost it. Raises InsufficientCredits, IdempotencyConflict (same key,
        another story), UserNotFound, StoreUnavailable (nothing was debited).
        """
        settings = self.settings
        started = time.perf_counter()
        job = await self.store.jobs.enqueue(
            EnqueueRequest(
                user_id=user_id,
                prompt=story.prompt,
                title=story.title,
                genre=story.genre,
                language=story.language,
                target_words=story.target_words,
                cost=settings.story_cost,
                max_attempts=settings.max_attempts,
                idempotency_key=idempotency_key,
                request_hash=story.fingerprint(),
                free_credits=settings.free_credits,
                idempotency_ttl_seconds=settings.idempotency_ttl_seconds,
            )
        )
        position = None
        if job.status == "pending" and job.fence is not None:
            position = await self._dispatch(
                job.job_id,
                user_id=user_id,
                fence=job.fence,
                weight=job.weight,
                max_active_per_user=job.max_active_per_user,
                priority=job.priority,
            )
        queued_in = time.perf_counter() - started
        kicked = False
        if not job.replayed and worth_a_kick(position, max_active=self.dispatcher.max_active):
            kicked = await self.kicker.kick(job_id=str(job.job_id))
        return Submission(job=job, position=position, kicked=kicked, queued_in_seconds=queued_in)

    async def look_up(self, job_id: UUID, *, user_id: UUID | None = None) -> JobStanding:
        """The job (with `user_id`, only that user's) and its place while it waits.

        Raises JobNotFound (also for another user's job), StoreUnavailable.
        """
        job = await self.store.jobs.get(job_id, user_id=user_id)
        position = None
        if job.status == "pending":
            position = await self._unless_redis_down("position", self.dispatcher.position(job_id))
        return JobStanding(job=job, position=position)

    async def cancel(self, job_id: UUID, *, user_id: UUID | None = None) -> Job:
        """Cancel a job: with `user_id`, only that user's (reason `user`); without, any job
        (reason `admin`). Pending: cancelled and refunded, then dropped from Redis (a copy
        Redis keeps is harmless: starting a cancelled job is refused). Processing: the request
        is recorded (`cancel_requested`) and the worker running it stops its generation and
        ends it cancelled and refunded, unless it completed first. Cancelled or being
        cancelled: the job as it is, nothing refunded again.

        Raises JobNotCancellable (completed or failed), JobNotFound, StoreUnavailable.
        """
        job = await self.store.jobs.cancel(job_id, user_id=user_id)
        if job.status == "cancelled":
            await self._unless_redis_down("remove", self.dispatcher.remove(job_id))
        return job

    # The operator's operations (admin endpoints and `storyq` verbs).

    async def queue_stats(self) -> QueueStats:
        """Postgres's counts merged with Redis's live ones (see QueueStats)."""
        truth = await self.store.admin.counts()
        live = await self._unless_redis_down("counts", self.dispatcher.counts())
        mean = truth.avg_generation_seconds or DEFAULT_GENERATION_SECONDS
        pause = None
        if live is not None:
            mean = live.avg_generation_seconds  # the rolling mean the ETAs use
            pause = await self._unless_redis_down(
                "provider_pause", self.dispatcher.provider_pause()
            )
        return QueueStats(
            waiting=live.waiting if live else truth.pending,
            active=live.active if live else truth.processing,
            delayed=live.delayed if live else 0,
            completed=truth.completed,
            failed=truth.failed,
            cancelled=truth.cancelled,
            max_active=self.dispatcher.max_active,
            avg_generation_seconds=round(mean, 3),
            oldest_pending_at=truth.oldest_pending_at,
            source="redis" if live else "postgres",
            prompt_tokens_today=truth.prompt_tokens_today,
            completion_tokens_today=truth.completion_tokens_today,
            cost_usd_today=truth.cost_usd_today,
            provider_pause=pause,
            held_by_user_cap=live.held if live else 0,
            by_tier=[
                TierLoad(tier=row.tier, pending=row.pending, processing=row.processing)
                for row in truth.by_tier
            ],
        )

    async def clean(self, status: CleanableStatus, *, older_than_seconds: float) -> int:
        """Delete finished job rows older than the age (stories stay); how many. Redis holds
        none of them."""
        return await self.store.admin.clean(status, older_than_seconds=older_than_seconds)

    async def empty(self) -> list[UUID]:
        """Cancel and refund every pending job, then drop them from Redis; their ids."""
        cancelled = await self.store.admin.empty()
        await self._unless_redis_down("empty", self.dispatcher.empty())
        return cancelled

    async def retry(self, job_id: UUID) -> JobStanding:
        """A failed job back to pending under a new fence (nothing charged again), then into
        the Redis queue. Raises JobNotRetryable, JobNotFound, StoreUnavailable."""
        job = await self.store.admin.retry_failed(job_id)
        position = await self._dispatch(
            job.job_id,
            user_id=job.user_id,
            fence=job.fence,
            weight=job.weight,
            max_active_per_user=job.max_active_per_user,
            priority=job.priority,
        )
        return JobStanding(job=job, position=position)

    async def browse_jobs(
        self, which: JobFilter, *, limit: int, cursor: JobCursor | None = None
    ) -> ListedJobPage:
        """A page of every user's jobs that `which` lets through, newest first, from Postgres
        alone (Redis's queue places are per job: see `look_up`). Raises ValueError (limit
        outside 1..MAX_PAGE_SIZE), InvalidStatus, StoreUnavailable."""
        return await self.store.admin.list_jobs(which, limit=limit, cursor=cursor)

    async def job_details(self, job_id: UUID) -> JobDetails:
        """Any user's job with its story so far and every attempt, oldest first.

        Raises JobNotFound, StoreUnavailable."""
        return await self.store.admin.job_details(job_id)

    async def grant_credits(self, user_id: UUID, amount: int) -> int:
        """Add credits (a ledger entry, reason "admin grant"); the new balance.

        Raises InvalidAmount, UserNotFound, StoreUnavailable."""
        return await self.store.credits.grant(user_id, amount, reason="admin grant")

    # Primitives.

    async def _dispatch(
        self,
        job_id: UUID,
        *,
        user_id: UUID,
        fence: int,
        weight: float = 1.0,
        max_active_per_user: int | None = None,
        priority: int = 0,
    ) -> Position | None:
        """Into the Redis queue with the user's plan's weight, running cap and priority
        (idempotent: a replay re-adds a job Redis lost)."""
        return await self._unless_redis_down(
            "enqueue",
            self.dispatcher.enqueue(
                job_id,
                user_id=user_id,
                fence=fence,
                weight=weight,
                max_active_per_user=max_active_per_user,
                priority=priority,
            ),
        )

    async def _unless_redis_down[T](self, operation: str, call: Awaitable[T]) -> T | None:
        """`await call`, or None (logged, reported) when Redis fails or does not answer within
        `redis_timeout`: Postgres has committed, and the sweeper repairs Redis."""
        try:
            async with asyncio.timeout(self.redis_timeout):
                return await call
        except Exception:  # any failure here is Redis's; the committed work must be answered
            logger.warning(
                "redis call failed after commit", extra={"operation": operation}, exc_info=True
            )
            if self._on_degraded is not None:
                self._on_degraded(operation)
            return None
