"""The sweep every invocation starts with: put right what dead workers and a lossy Redis left.

Postgres decides; Redis follows (`follow`). Counts: `reaped` leases, `requeued` jobs given
another attempt, `failed` jobs whose last attempt was lost (failed and refunded), `rebuilt` jobs
put back from Postgres, `promoted` retries, `orphans` forgotten.

1. Reap leases that expired in Redis and ask Postgres about each attempt: one silent for a
   lease (LEASE_SECONDS) is dead and counts as a failed attempt (`worker_lost`): delayed for
   its next attempt, or failed and refunded when it was the last. One whose Postgres heartbeat
   is fresh is alive (its worker only missed Redis): its lease is held again, never handed to
   another worker. Whatever else Postgres says (finished, superseded, never started), Redis
   follows, so nothing of a finished job is left behind.
2. Requeue stalled jobs: processing rows silent for a lease, whatever Redis says (it may have
   lost their leases).
3. Rebuild from one Postgres snapshot: every pending job Redis lacks goes back into the queue,
   so after a FLUSHALL nothing is lost; when Redis lost its state (no ready mark, decided
   atomically in Redis) the running jobs get their leases back before claims resume. Then the
   leases follow the same snapshot: a running job without one gets it back, and a lease held
   for a lease's time without a running attempt behind it (a start that never came, a lost
   ack) is settled like a reaped one. Leases are long and not renewed while an attempt runs
   (Settings.dispatch_lease_seconds), so without this such a lease would hold its slot for the
   generation timeout.
4. Promote delayed retries that are due.
5. Forget orphaned bookkeeping (a bounded walk of the jobs hash) and expired idempotency keys.

Each step stands alone: one failing is logged and the others still run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from storyq.queue import Claim, PendingJob, RunningJob
from storyq.store import LostAttempt
from storyq_worker.context import WorkerContext
from storyq_worker.follow import follow
from storyq_worker.summary import Summary
from storyq_worker.telemetry import logger

REAP_BATCH = 100
# Hash fields of the jobs hash looked at per sweep for orphans (three per job).
ORPHAN_SCAN = 300
IDEMPOTENCY_PURGE_BATCH = 1000


async def sweep(ctx: WorkerContext) -> Summary:
    summary = Summary()
    steps: list[tuple[str, Callable[[WorkerContext, Summary], Awaitable[None]]]] = [
        ("reap", _reap_expired),
        ("stalled", _requeue_stalled),
        ("rebuild", _rebuild),
        ("promote", _promote),
        ("housekeeping", _housekeeping),
    ]
    for name, step in steps:
        try:
            await step(ctx, summary)
        except Exception:  # the next step (and the next sweep) may still get through
            logger.exception("sweep step failed", extra={"step": name})
    return summary


async def _record_lost(
    ctx: WorkerContext, *, job_id: UUID, fence: int, attempt: int, why: str
) -> LostAttempt:
    """Ask Postgres about the attempt `fence` (dead if silent for a lease) and make Redis
    follow what it says."""
    lost = await ctx.store.jobs.requeue_stalled(
        job_id,
        fence=fence,
        live_seconds=ctx.settings.lease_seconds,
        reason=why,
        retry_delay_seconds=ctx.retry_delay(attempt),
    )
    await follow(ctx, job_id, held_fence=fence, state=lost)
    if lost.outcome in ("requeued", "failed"):
        logger.warning(
            "worker lost",
            extra={"job_id": job_id, "fence": fence, "status": lost.status, "reason": why},
        )
    return lost


async def _reap_expired(ctx: WorkerContext, summary: Summary) -> None:
    reaped = await ctx.dispatcher.reap_expired(REAP_BATCH)
    await _settle(ctx, summary, reaped, why="the worker's lease expired")


async def _settle(ctx: WorkerContext, summary: Summary, leases: list[Claim], *, why: str) -> None:
    """Leases taken out of Redis (expired, or not backed by a running attempt in Postgres):
    ask Postgres about each attempt and make Redis follow."""
    for claim in leases:
        summary.reaped += 1
        try:
            lost = await _record_lost(
                ctx, job_id=claim.job_id, fence=claim.fence, attempt=0, why=why
            )
        except Exception:
            # Postgres unreachable: hold the lease again so the job still counts against the
            # cap; the next sweep asks again.
            logger.exception("lost attempt not recorded", extra={"job_id": claim.job_id})
            await ctx.dispatcher.heartbeat(
                claim.job_id,
                claim.fence,
                lease_seconds=ctx.settings.dispatch_lease_seconds,
                user_id=claim.user_id,
            )
            continue
        _count(summary, lost)


async def _requeue_stalled(ctx: WorkerContext, summary: Summary) -> None:
    seconds = ctx.settings.lease_seconds
    for job in await ctx.store.jobs.stalled(stalled_for_seconds=seconds):
        lost = await _record_lost(
            ctx,
            job_id=job.job_id,
            fence=job.fence,
            attempt=job.attempt,
            why=f"no heartbeat for {seconds:g} s",
        )
        _count(summary, lost)


def _count(summary: Summary, lost: LostAttempt) -> None:
    if lost.outcome == "requeued":
        summary.requeued += 1
    elif lost.outcome == "failed":
        summary.failed += 1


async def _rebuild(ctx: WorkerContext, summary: Summary) -> None:
    snapshot = await ctx.store.jobs.dispatch_snapshot()
    running = [
        RunningJob(job_id=job.job_id, user_id=job.user_id, fence=job.fence)
        for job in snapshot.running
    ]
    summary.rebuilt += await ctx.dispatcher.rebuild(
        [
            PendingJob(
                job_id=job.job_id,
                user_id=job.user_id,
                fence=job.fence,
                queued_at=job.queued_at,
                next_attempt_at=job.next_attempt_at,
            )
            for job in snapshot.pending
        ],
        running=running,
        lease_seconds=ctx.settings.dispatch_lease_seconds,
    )
    # Leases are long and not renewed while an attempt runs: make them follow the same snapshot
    # (a lease Redis lost comes back; one without a running attempt is settled like a reaped one).
    restored, unbacked = await ctx.dispatcher.audit_leases(
        running,
        lease_seconds=ctx.settings.dispatch_lease_seconds,
        judge_after_seconds=ctx.settings.lease_seconds,
    )
    summary.rebuilt += restored
    await _settle(ctx, summary, unbacked, why="no running attempt in Postgres held its lease")


async def _promote(ctx: WorkerContext, summary: Summary) -> None:
    summary.promoted += await ctx.dispatcher.promote_due()


async def _housekeeping(ctx: WorkerContext, summary: Summary) -> None:
    summary.orphans += await ctx.dispatcher.sweep_orphans(ORPHAN_SCAN)
    await ctx.store.jobs.purge_idempotency_keys(
        ttl_seconds=ctx.settings.idempotency_ttl_seconds, limit=IDEMPOTENCY_PURGE_BATCH
    )
