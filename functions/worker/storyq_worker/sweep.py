"""The sweep every invocation starts with: put right what dead workers and a lossy Redis left.

Counts: `reaped` leases, `requeued` jobs given another attempt, `failed` jobs whose last
attempt was lost (failed and refunded), `rebuilt` jobs put back from Postgres, `promoted`.

1. Reap leases that expired (their worker died or hung): the attempt is recorded as failed
   (`worker_lost`, retryable) in Postgres, then the job is delayed for its next attempt, or,
   when that was its last attempt, forgotten in Redis (Postgres has failed and refunded it).
2. Requeue stalled jobs: processing rows whose heartbeat is older than STALL_AFTER_SECONDS and
   that hold no lease in Redis (Redis lost it: flushed, evicted, restarted).
3. Rebuild: every pending job Postgres has and Redis lacks goes back into the queue, so after a
   FLUSHALL nothing is lost; the jobs Postgres has running go along, and when Redis lost its
   state (no ready mark, decided atomically in Redis) they get their leases back before the
   queue takes claims again, so they count against the global cap.
4. Promote delayed retries that are due.

Each step stands alone: one failing is logged and the others still run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from storyq.queue import PendingJob, RunningJob
from storyq.store import FailOutcome, JobNotFound, StaleAttempt
from storyq_worker.context import WorkerContext
from storyq_worker.summary import Summary
from storyq_worker.telemetry import logger

REAP_BATCH = 100


async def sweep(ctx: WorkerContext) -> Summary:
    summary = Summary()
    steps: list[tuple[str, Callable[[WorkerContext, Summary], Awaitable[None]]]] = [
        ("reap", _reap_expired),
        ("stalled", _requeue_stalled),
        ("rebuild", _rebuild),
        ("promote", _promote),
    ]
    for name, step in steps:
        try:
            await step(ctx, summary)
        except Exception:  # the next step (and the next sweep) may still get through
            logger.exception("sweep step failed", extra={"step": name})
    return summary


async def _record_lost(
    ctx: WorkerContext, *, job_id: str, user_id: str, attempt: int, why: str
) -> FailOutcome | None:
    """Count a dead attempt as failed and re-dispatch or forget the job; None if stale."""
    delay = ctx.retry_delay(attempt)
    try:
        outcome = await ctx.store.jobs.requeue_stalled(
            UUID(job_id),
            attempt=attempt,
            error_code="worker_lost",
            error_message=why,
            retry_delay_seconds=delay,
        )
    except (StaleAttempt, JobNotFound):
        # Nothing ran under this attempt, or it already finished: Postgres says what is true
        # and the rebuild step below re-dispatches the job if it is pending.
        return None
    if outcome.will_retry:
        await ctx.dispatcher.retry_later(
            job_id, user_id=user_id, attempts=outcome.attempts, delay_seconds=delay
        )
    else:
        await ctx.dispatcher.remove(job_id)
    logger.warning(
        "worker lost",
        extra={"job_id": job_id, "attempt": attempt, "status": outcome.status, "reason": why},
    )
    return outcome


async def _reap_expired(ctx: WorkerContext, summary: Summary) -> None:
    for claim in await ctx.dispatcher.reap_expired(REAP_BATCH):
        summary.reaped += 1
        outcome = await _record_lost(
            ctx,
            job_id=claim.job_id,
            user_id=claim.user_id,
            attempt=claim.fence,
            why="the worker's lease expired",
        )
        _count(summary, outcome)


async def _requeue_stalled(ctx: WorkerContext, summary: Summary) -> None:
    seconds = ctx.settings.stall_after_seconds
    stalled = await ctx.store.jobs.stalled(stalled_for_seconds=seconds)
    if not stalled:
        return
    leased = await ctx.dispatcher.active_job_ids()
    for job in stalled:
        if str(job.job_id) in leased:
            continue  # its lease will lapse and be reaped; that path records it
        outcome = await _record_lost(
            ctx,
            job_id=str(job.job_id),
            user_id=str(job.user_id),
            attempt=job.attempt,
            why=f"no heartbeat for {seconds:g} s and no lease",
        )
        _count(summary, outcome)


def _count(summary: Summary, outcome: FailOutcome | None) -> None:
    if outcome is None:
        return
    if outcome.will_retry:
        summary.requeued += 1
    else:
        summary.failed += 1


async def _rebuild(ctx: WorkerContext, summary: Summary) -> None:
    # Read before the pending jobs: a job that starts in between is then leased in Redis.
    running = [
        RunningJob(job_id=str(job.job_id), user_id=str(job.user_id), attempt=job.attempt)
        for job in await ctx.store.jobs.stalled(stalled_for_seconds=0)
    ]
    pending = await ctx.store.jobs.dispatchable()
    summary.rebuilt += await ctx.dispatcher.rebuild(
        [
            PendingJob(
                job_id=str(job.job_id),
                user_id=str(job.user_id),
                attempts=job.attempts,
                queued_at=job.queued_at,
                next_attempt_at=job.next_attempt_at,
            )
            for job in pending
        ],
        running=running,
        lease_seconds=ctx.settings.lease_seconds,
    )


async def _promote(ctx: WorkerContext, summary: Summary) -> None:
    summary.promoted += await ctx.dispatcher.promote_due()
