"""One claimed attempt, start to finish: start it in Postgres (which refuses it while the global
cap is reached), generate under heartbeats, then complete it, or fail it (retry later or fail
for good), or cancel it when a heartbeat answer says its cancel was requested (the generation
is stopped at once), or release it unused when the worker shuts down or can no longer prove it
is alive, or drop it when another attempt owns the job. Every write is fenced by the attempt's token
(`Claim.fence`, issued by Postgres).

What the attempt used of its provider (`request.usage`: model, tokens, cost at MODEL_PRICES)
is recorded first, whatever it came to, completed, failed, cut or cancelled.

Back-pressure: a generation refused for load (`GenerationError.backpressure`: a 429, or every
model overloaded) pauses the provider for every worker (`Dispatcher.pause`, honouring its
Retry-After). An attempt leased before the pause is released, not failed: the job waits again
without having spent an attempt. A probe claim (`Claim.probe`, the one claim let through after
a pause) ends the pause (`Dispatcher.resume`) as soon as the provider answers it; a refused
probe renews the pause and spends its attempt like any failure, so a provider that never
recovers fails each job after MAX_ATTEMPTS probes (refunded) instead of holding it forever; a
probe stopped before any answer (shutdown, cancel, timeout) hands the probe back
(`Dispatcher.end_probe`) and leaves the pause as it is.

Order matters: the heartbeats stop before the lease is acked or handed back, and Postgres is
written before Redis, so a crash in between leaves a lease that lapses and a sweep that
finishes the bookkeeping from what Postgres says.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from storyq.generation import (
    GenerationError,
    GenerationRequest,
    GenerationResult,
    TransientGenerationError,
    Usage,
)
from storyq.generation.pricing import cost_usd
from storyq.queue import Claim
from storyq.store import (
    AttemptUsage,
    Failure,
    JobNotFound,
    StaleAttempt,
    StartedJob,
    StartRefused,
    StoreError,
)
from storyq_worker.context import WorkerContext
from storyq_worker.follow import follow
from storyq_worker.lease import LeaseKeeper, StopReason
from storyq_worker.summary import Outcome
from storyq_worker.telemetry import logger

# Refusals meaning "this attempt has nothing (more) to do with the job".
_NOT_OURS = (StaleAttempt, JobNotFound)
_MESSAGE_LIMIT = 1000
# The error a generation interrupted by the worker's shutdown ends with: released, not failed.
SHUTDOWN = "worker_shutdown"


@dataclass(frozen=True)
class _Run:
    """What the generation came to: a result, an error, or stopped by its lease keeper."""

    result: GenerationResult | None = None
    error: GenerationError | None = None
    stopped: StopReason | None = None


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
    extra = {"job_id": claim.job_id, "fence": claim.fence}
    sent = asyncio.get_running_loop().time()
    try:
        started = await ctx.store.jobs.start(
            claim.job_id,
            claim.fence,
            max_active=ctx.dispatcher.max_active,
            live_seconds=ctx.settings.lease_seconds,
        )
    except JobNotFound:
        await _probe_unused(ctx, claim)
        await ctx.dispatcher.ack(claim.job_id, claim.fence, generation_seconds=None)
        return Outcome.SKIPPED
    if isinstance(started, StartRefused):
        await _probe_unused(ctx, claim)
        return await _refused(ctx, claim, started)
    logger.info("attempt started", extra={**extra, "attempt": started.attempt})
    began = time.monotonic()
    request = _request(started)
    run = await _generate(ctx, claim, request, abandon, confirmed_at=sent)
    seconds = time.monotonic() - began
    await _record_usage(ctx, claim, request.usage)
    if claim.probe:
        await _settle_probe(ctx, claim, request.usage, run)
    return await _end(ctx, claim, started, run, seconds=seconds)


async def _end(
    ctx: WorkerContext, claim: Claim, started: StartedJob, run: _Run, *, seconds: float
) -> Outcome:
    """Record what the generation came to, fenced by the attempt's token."""
    if run.result is not None:
        return await _complete(ctx, claim, run.result, seconds)
    if run.stopped is StopReason.CANCELLED:
        return await _cancel(ctx, claim)
    if run.stopped is StopReason.UNCONFIRMED:
        return await _release(ctx, claim, why="no heartbeat confirmed in time")
    if run.stopped is not None or run.error is None:
        return await _drop(ctx, claim, "superseded while generating")
    if run.error.backpressure:
        return await _pause(ctx, claim, started, run.error)
    return await _fail(ctx, claim, started, run.error)


async def _settle_probe(ctx: WorkerContext, claim: Claim, usage: Usage, run: _Run) -> None:
    """What the probe's attempt says about the provider: answered (its first chunk: the pause
    already ended, `_resume_when_answered`), or a story from a generator that calls no provider
    (the pause ends), or refused for load (`_pause` renews it), or nothing at all (stopped
    before any answer, or an error on this side: the probe is handed back, the pause stays)."""
    if usage.answered.is_set() or (run.error is not None and run.error.backpressure):
        return
    if run.result is not None:
        await _resume(ctx, claim)
        return
    await _probe_unused(ctx, claim)


async def _record_usage(ctx: WorkerContext, claim: Claim, usage: Usage) -> None:
    """Record what the attempt used of its provider (nothing when it used no tokens).
    Before the attempt's end is written, so a completed job's result sums every attempt. A
    failure to record is logged, never the attempt's end: the story matters more."""
    if not usage.used_tokens:
        return
    record = AttemptUsage(
        job_id=claim.job_id,
        fence=claim.fence,
        model=usage.model,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cost_usd=cost_usd(usage, ctx.settings.model_prices),
        estimated=usage.estimated,
    )
    try:
        await ctx.store.jobs.record_usage([record])
    except StoreError:
        logger.warning(
            "usage not recorded",
            exc_info=True,
            extra={"job_id": claim.job_id, "fence": claim.fence},
        )


async def _resume(ctx: WorkerContext, claim: Claim) -> None:
    """The provider answered this probe: the pause is over for every worker."""
    try:
        await ctx.dispatcher.resume()
    except Exception:  # Redis unreachable: the probe's time runs out and another probes
        logger.warning("could not end the provider pause", exc_info=True)
        return
    logger.info("the provider answered the probe: claims resume", extra={"job_id": claim.job_id})


async def _probe_unused(ctx: WorkerContext, claim: Claim) -> None:
    """A probe claim that learnt nothing of the provider (its attempt never started, or stopped
    before any answer): let the next claim probe at once."""
    if not claim.probe:
        return
    try:
        await ctx.dispatcher.end_probe()
    except Exception:  # its time runs out instead
        logger.warning("could not hand the probe back", exc_info=True)


async def _pause(
    ctx: WorkerContext, claim: Claim, started: StartedJob, error: GenerationError
) -> Outcome:
    """Refused for load: pause the provider for every worker, and give the attempt back
    unspent, unless it was the probe: a refused probe is a failed attempt (retried after the
    pause, or failed and refunded once it was the last)."""
    extra = {"job_id": claim.job_id, "error_code": error.code, "retry_after": error.retry_after}
    try:
        seconds = await ctx.dispatcher.pause(error.retry_after, reason=error.code)
    except Exception:  # Redis unreachable: the job still goes back; claims fail meanwhile
        logger.warning("could not pause the provider", exc_info=True, extra=extra)
    else:
        logger.warning(
            "the provider refused work for load: claims paused",
            extra={**extra, "pause_seconds": round(seconds, 3)},
        )
    if claim.probe:
        return await _fail(ctx, claim, started, error)
    outcome = await _release(ctx, claim, why=f"provider back-pressure ({error.code})")
    return Outcome.PAUSED if outcome is Outcome.RELEASED else outcome


async def _refused(ctx: WorkerContext, claim: Claim, refused: StartRefused) -> Outcome:
    """Postgres would not start the claim: give it back (the cap), or make Redis follow."""
    extra = {"job_id": claim.job_id, "fence": claim.fence, "reason": refused.reason}
    if refused.reason == "capacity":
        logger.info("start refused: the global cap is reached; claim given back", extra=extra)
        await ctx.dispatcher.unclaim(claim)
        return Outcome.DEFERRED
    logger.info("claim not startable", extra=extra)
    if refused.reason != "running":  # `running`: the lease is that attempt's own; keep it
        await follow(ctx, claim.job_id, held_fence=claim.fence, state=refused)
    return Outcome.SKIPPED


async def _generate(
    ctx: WorkerContext,
    claim: Claim,
    request: GenerationRequest,
    abandon: asyncio.Event,
    *,
    confirmed_at: float,
) -> _Run:
    keeper = LeaseKeeper(ctx, claim, confirmed_at=confirmed_at)
    generation = asyncio.create_task(ctx.generator.generate(request, keeper.progress))
    keeper.start(on_stop=generation.cancel)
    abandoned = asyncio.create_task(abandon.wait())
    answered = asyncio.create_task(_resume_when_answered(ctx, claim, request.usage))
    try:
        await asyncio.wait(
            {generation, abandoned},
            timeout=ctx.settings.generation_timeout_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
    finally:
        abandoned.cancel()
        if request.usage.answered.is_set():  # a probe's resume may be on its way: let it land
            await asyncio.gather(answered, return_exceptions=True)
        answered.cancel()
        generation.cancel()
        await asyncio.wait({generation})
        if _finished_first(generation):
            ctx.writer.forget(claim.job_id, claim.fence)  # the completion writes the story
        else:  # cancelled, failed, given back: the story keeps what was written so far
            await ctx.writer.flush(claim.job_id, claim.fence)
        await keeper.stop()
    if keeper.stopped is StopReason.CANCELLED and _finished_first(generation):
        # The story was written before the cancel reached it: completing it is up to the
        # fence (the cancel request does not stop a completion).
        return _settle(generation, abandoned=False)
    if keeper.stopped is not None:
        return _Run(stopped=keeper.stopped)
    return _settle(generation, abandoned=abandon.is_set())


async def _resume_when_answered(ctx: WorkerContext, claim: Claim, usage: Usage) -> None:
    """A probe ends the pause the moment the provider takes its request (its first chunk),
    not when the story is done: the other workers need not wait minutes for it."""
    if not claim.probe:
        return
    await usage.answered.wait()
    await _resume(ctx, claim)


def _finished_first(generation: asyncio.Task[GenerationResult]) -> bool:
    return not generation.cancelled() and generation.exception() is None


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
            claim.job_id,
            fence=claim.fence,
            content=result.content,
            title=result.title,
            result=result.summary(generation_seconds=seconds),
        )
    except _NOT_OURS:
        return await _drop(ctx, claim, "finished after another attempt took over")
    await ctx.dispatcher.ack(claim.job_id, claim.fence, generation_seconds=seconds)
    logger.info(
        "attempt completed",
        extra={"job_id": claim.job_id, "fence": claim.fence, "words": result.words},
    )
    return Outcome.COMPLETED


async def _fail(
    ctx: WorkerContext, claim: Claim, job: StartedJob, error: GenerationError
) -> Outcome:
    if error.code == SHUTDOWN:
        return await _release(ctx, claim, why="the worker shut down")
    delay = ctx.retry_delay(job.attempt, retry_after=error.retry_after) if error.retryable else 0.0
    failure = Failure(
        code=error.code,
        message=error.message[:_MESSAGE_LIMIT],
        retryable=error.retryable,
        retry_delay_seconds=delay,
    )
    try:
        outcome = await ctx.store.jobs.fail(claim.job_id, fence=claim.fence, failure=failure)
    except _NOT_OURS:
        return await _drop(ctx, claim, "failed after another attempt took over")
    await follow(ctx, claim.job_id, held_fence=claim.fence, state=outcome)
    extra = {"job_id": claim.job_id, "attempt": job.attempt, "error_code": error.code}
    if not outcome.will_retry:
        logger.warning("job failed for good", extra={**extra, "refunded": outcome.refunded})
        return Outcome.FAILED
    logger.info("attempt failed; retrying later", extra={**extra, "delay_seconds": delay})
    return Outcome.RETRIED


async def _cancel(ctx: WorkerContext, claim: Claim) -> Outcome:
    """The generation was stopped for a cancel request: end the job cancelled and refunded
    (the story keeps the text it has), then free the slot."""
    extra = {"job_id": claim.job_id, "fence": claim.fence}
    try:
        await ctx.store.jobs.cancel_running(claim.job_id, fence=claim.fence)
    except _NOT_OURS:
        return await _drop(ctx, claim, "cancelled after another attempt took over")
    except StoreError:
        # Postgres unreachable: the attempt goes silent, and the sweep that counts it as lost
        # ends the job cancelled (its cancel was requested), never retried.
        logger.warning("cancel not recorded; a sweep will end the job", exc_info=True)
        return Outcome.ERROR
    await ctx.dispatcher.ack(claim.job_id, claim.fence, generation_seconds=None)
    logger.info("attempt cancelled", extra=extra)
    return Outcome.CANCELLED


async def _release(ctx: WorkerContext, claim: Claim, *, why: str) -> Outcome:
    """Give the attempt back unused: the job goes back to the queue at once, uncharged."""
    try:
        outcome = await ctx.store.jobs.release(claim.job_id, fence=claim.fence)
    except _NOT_OURS:
        return await _drop(ctx, claim, "released after another attempt took over")
    except StoreError:
        # Postgres unreachable: its row goes silent and a sweep counts the attempt as lost.
        logger.warning("release failed; a sweep will recover the job", exc_info=True)
        return Outcome.ERROR
    await follow(ctx, claim.job_id, held_fence=claim.fence, state=outcome)
    logger.info("attempt released", extra={"job_id": claim.job_id, "reason": why})
    return Outcome.RELEASED


async def _drop(ctx: WorkerContext, claim: Claim, why: str) -> Outcome:
    """A late finisher changes nothing: log, let go of the lease if it is still ours."""
    logger.warning(
        "result dropped: stale attempt",
        extra={"job_id": claim.job_id, "fence": claim.fence, "reason": why},
    )
    await ctx.dispatcher.ack(claim.job_id, claim.fence, generation_seconds=None)
    return Outcome.DROPPED
