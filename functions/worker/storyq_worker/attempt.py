"""One claimed attempt, start to finish: start it in Postgres, generate under heartbeats, then
complete it, or fail it (retry later or fail for good), or release it unused when the worker
shuts down, or drop it when another attempt owns the job. Every write is fenced by the attempt
number (`Claim.fence`).

Order matters: the heartbeats stop before the lease is acked or handed back, and Postgres is
written before Redis, so a crash in between leaves a lease that lapses and a sweep that
finishes the bookkeeping from what Postgres says.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from uuid import UUID

from storyq.generation import (
    GenerationError,
    GenerationRequest,
    GenerationResult,
    TransientGenerationError,
)
from storyq.queue import Claim
from storyq.store import (
    FailOutcome,
    Failure,
    JobNotFound,
    JobNotStartable,
    StaleAttempt,
    StartedJob,
)
from storyq_worker.context import WorkerContext
from storyq_worker.lease import LeaseKeeper
from storyq_worker.summary import Outcome
from storyq_worker.telemetry import logger

# Refusals meaning "this attempt has nothing (more) to do with the job".
_NOT_OURS = (StaleAttempt, JobNotFound)
_MESSAGE_LIMIT = 1000
# The error a generation interrupted by the worker's shutdown ends with: released, not failed.
SHUTDOWN = "worker_shutdown"


@dataclass(frozen=True)
class _Run:
    """What the generation came to: a result, an error, or the job taken over by another."""

    result: GenerationResult | None = None
    error: GenerationError | None = None
    superseded: bool = False


def _request(job: StartedJob) -> GenerationRequest:
    return GenerationRequest(
        job_id=str(job.job_id),
        prompt=job.prompt,
        target_words=job.target_words,
        title=job.title,
        genre=job.genre,
        language=job.language,
    )


async def run_attempt(ctx: WorkerContext, claim: Claim, *, abandon: asyncio.Event) -> Outcome:
    """Run the claimed attempt; `abandon` set means: stop generating and give the job back."""
    extra = {"job_id": claim.job_id, "attempt": claim.fence}
    try:
        job = await ctx.store.jobs.start(UUID(claim.job_id), claim.fence)
    except (*_NOT_OURS, JobNotStartable) as exc:
        logger.info("claim not startable; releasing it", extra={**extra, "reason": exc.code})
        await ctx.dispatcher.ack(claim.job_id, claim.fence, generation_seconds=None)
        return Outcome.SKIPPED
    logger.info("attempt started", extra=extra)
    began = time.monotonic()
    run = await _generate(ctx, claim, _request(job), abandon)
    seconds = time.monotonic() - began
    if run.result is not None:
        return await _complete(ctx, claim, run.result, seconds)
    if run.superseded or run.error is None:
        return await _drop(ctx, claim, "superseded while generating")
    return await _fail(ctx, claim, job, run.error)


async def _generate(
    ctx: WorkerContext, claim: Claim, request: GenerationRequest, abandon: asyncio.Event
) -> _Run:
    keeper = LeaseKeeper(ctx, claim)
    generation = asyncio.create_task(ctx.generator.generate(request, keeper.progress))
    keeper.start(on_lost=generation.cancel)
    abandoned = asyncio.create_task(abandon.wait())
    try:
        await asyncio.wait(
            {generation, abandoned},
            timeout=ctx.settings.generation_timeout_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        abandoned.cancel()
        generation.cancel()
        await asyncio.wait({generation})
        await keeper.stop()
    if keeper.lost:
        return _Run(superseded=True)
    return _settle(generation, abandoned=abandon.is_set())


def _settle(generation: asyncio.Task[GenerationResult], *, abandoned: bool) -> _Run:
    """The finished generation task as a result or a classified error."""
    if generation.cancelled():
        if abandoned:
            return _Run(error=TransientGenerationError(SHUTDOWN, "the worker shut down"))
        return _Run(error=TransientGenerationError("timeout", "the generation took too long"))
    exc = generation.exception()
    if exc is None:
        return _Run(result=generation.result())
    if isinstance(exc, GenerationError):
        return _Run(error=exc)
    logger.error("generator crashed", exc_info=exc)
    return _Run(error=TransientGenerationError("generator_error", f"{type(exc).__name__}: {exc}"))


async def _complete(
    ctx: WorkerContext, claim: Claim, result: GenerationResult, seconds: float
) -> Outcome:
    try:
        await ctx.store.jobs.complete(
            UUID(claim.job_id),
            attempt=claim.fence,
            content=result.content,
            title=result.title,
            result=result.summary(generation_seconds=seconds),
        )
    except _NOT_OURS:
        return await _drop(ctx, claim, "finished after another attempt took over")
    await ctx.dispatcher.ack(claim.job_id, claim.fence, generation_seconds=seconds)
    logger.info(
        "attempt completed",
        extra={"job_id": claim.job_id, "attempt": claim.fence, "words": result.words},
    )
    return Outcome.COMPLETED


async def _fail(
    ctx: WorkerContext, claim: Claim, job: StartedJob, error: GenerationError
) -> Outcome:
    if error.code == SHUTDOWN:
        return await _release(ctx, claim, job)
    delay = ctx.retry_delay(claim.fence, retry_after=error.retry_after) if error.retryable else 0.0
    failure = Failure(
        code=error.code,
        message=error.message[:_MESSAGE_LIMIT],
        retryable=error.retryable,
        retry_delay_seconds=delay,
    )
    try:
        outcome = await ctx.store.jobs.fail(
            UUID(claim.job_id), attempt=claim.fence, failure=failure
        )
    except _NOT_OURS:
        return await _drop(ctx, claim, "failed after another attempt took over")
    extra = {"job_id": claim.job_id, "attempt": claim.fence, "error_code": error.code}
    if not outcome.will_retry:
        await ctx.dispatcher.ack(claim.job_id, claim.fence, generation_seconds=None)
        logger.warning("job failed for good", extra={**extra, "refunded": outcome.refunded})
        return Outcome.FAILED
    await _hand_back(ctx, claim, job, outcome, delay_seconds=delay)
    logger.info("attempt failed; retrying later", extra={**extra, "delay_seconds": delay})
    return Outcome.RETRIED


async def _release(ctx: WorkerContext, claim: Claim, job: StartedJob) -> Outcome:
    """Shutting down: the attempt goes back unused, and the job to the queue at once."""
    try:
        outcome = await ctx.store.jobs.release(UUID(claim.job_id), attempt=claim.fence)
    except _NOT_OURS:
        return await _drop(ctx, claim, "released after another attempt took over")
    await _hand_back(ctx, claim, job, outcome, delay_seconds=0.0)
    logger.info("attempt released at shutdown", extra={"job_id": claim.job_id})
    return Outcome.RELEASED


async def _hand_back(
    ctx: WorkerContext, claim: Claim, job: StartedJob, outcome: FailOutcome, *, delay_seconds: float
) -> None:
    """Move the job from our lease to the delayed set with Postgres's attempt count."""
    hand_back = functools.partial(
        ctx.dispatcher.retry_later,
        claim.job_id,
        user_id=str(job.user_id),
        attempts=outcome.attempts,
        delay_seconds=delay_seconds,
    )
    if not await hand_back(fence=claim.fence):
        # The lease lapsed meanwhile (and was reaped): queue it as the sweeper would.
        await hand_back()


async def _drop(ctx: WorkerContext, claim: Claim, why: str) -> Outcome:
    """A late finisher changes nothing: log, let go of the lease if it is still ours."""
    logger.warning(
        "result dropped: stale attempt",
        extra={"job_id": claim.job_id, "attempt": claim.fence, "reason": why},
    )
    await ctx.dispatcher.ack(claim.job_id, claim.fence, generation_seconds=None)
    return Outcome.DROPPED
