"""The sweep every invocation starts with: put right what dead workers and a lossy Redis left.

Postgres decides; Redis follows (`follow`). Counts: `reaped` leases taken back, `requeued` jobs
given another attempt, `failed` jobs whose last attempt was lost (failed and refunded),
`rebuilt` jobs and leases put back from Postgres, `promoted` retries, `orphans` forgotten.

1. Requeue stalled jobs: processing rows silent for a lease (LEASE_SECONDS), whatever Redis
   says. Each counts as a failed attempt (`worker_lost`): delayed for its next attempt, or
   failed and refunded when it was the last.
2. Make Redis follow one Postgres snapshot, in one script call (`Dispatcher.sweep`), whose
   size does not grow with the backlog: the running attempts, the oldest RECENT_LIMIT pending
   jobs whose next attempt came due in the last RECENT_SECONDS (where an enqueue or a requeue
   lost between Postgres and Redis would be), and one page of a walk over every pending job
   (anything else Redis lost is found within backlog / SNAPSHOT_PAGE sweeps).
   - When Redis lost its state (no ready mark, decided atomically in Redis) the running jobs
     get their leases back before claims resume, and every pending job is put back, walking
     from the head of the queue a page at a time (so they wait in queue order; from the head
     again if Redis is flushed once more meanwhile), before this sweep ends: after a FLUSHALL
     nothing is lost.
   - The leases follow the running attempts: one Redis lost comes back; one expired or held
     for a lease's time without a running attempt behind it (a dead worker, a start that
     never came, a lost ack) is settled: Postgres says what became of the attempt and Redis
     follows. One whose Postgres heartbeat is fresh is alive and held again. Leases are long
     and not renewed while an attempt runs (Settings.dispatch_lease_seconds), so without this
     such a lease would hold its slot for the generation timeout.
   - Due retries are promoted, and a bounded walk of the jobs hash forgets orphaned
     bookkeeping.
3. Expire waiting jobs: at most EXPIRE_BATCH jobs still waiting JOB_TTL_SECONDS after they were
   queued, never started, are cancelled (`expired`) and refunded in Postgres, then dropped
   from Redis. It runs before the snapshot, so Redis does not get them back.
4. Purge expired idempotency keys.

Each step stands alone: one failing is logged and the others still run. The sweep reports how
many jobs wait once it is done, so an invocation with nothing to do claims nothing: idle, a
scheduled invocation costs seven billed Redis commands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID

from storyq.queue import Claim, PendingJob, QueueNotReady, RunningJob
from storyq.store import DispatchableJob, LostAttempt, StalledJob, WalkPlace
from storyq_worker.context import WorkerContext
from storyq_worker.follow import follow
from storyq_worker.summary import Summary
from storyq_worker.telemetry import logger

# Pending jobs whose next attempt came due this long ago or later are checked on every sweep,
# the oldest RECENT_LIMIT of them (a burst beyond that is checked as the window moves on, or
# by the walk).
RECENT_SECONDS = 900.0
RECENT_LIMIT = 200
# Pending jobs of the walk over the whole backlog checked per sweep; after a flush, per call.
SNAPSHOT_PAGE = 200
REBUILD_PAGE = 1000
# A flush is followed by at most this many rebuild pages in one sweep (a million jobs).
MAX_REBUILD_PAGES = 1000
IDEMPOTENCY_PURGE_BATCH = 1000
# Waiting jobs expired per sweep (the rest wait for the next minute's sweep).
EXPIRE_BATCH = 500


async def sweep(ctx: WorkerContext) -> Summary:
    """The sweep (see the module docstring); what it did."""
    summary, _ = await sweep_and_count(ctx)
    return summary


async def sweep_and_count(ctx: WorkerContext) -> tuple[Summary, int | None]:
    """The sweep, and how many jobs wait once it is done (None when Redis did not say)."""
    summary = Summary()
    waiting: list[int] = []

    async def follow_snapshot(ctx: WorkerContext, summary: Summary) -> None:
        waiting.append(await _follow_snapshot(ctx, summary))

    steps: list[tuple[str, Callable[[WorkerContext, Summary], Awaitable[None]]]] = [
        ("stalled", _requeue_stalled),
        ("expire", _expire_waiting),
        ("snapshot", follow_snapshot),
        ("housekeeping", _housekeeping),
    ]
    for name, step in steps:
        try:
            await step(ctx, summary)
        except Exception:  # the next step (and the next sweep) may still get through
            logger.exception("sweep step failed", extra={"step": name})
    return summary, (waiting[0] if waiting else None)


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


async def _settle(ctx: WorkerContext, summary: Summary, leases: list[Claim], *, why: str) -> None:
    """Leases the audit took out of Redis (expired, or not backed by a running attempt):
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


async def _expire_waiting(ctx: WorkerContext, summary: Summary) -> None:
    expired = await ctx.store.jobs.expire(
        ttl_seconds=ctx.settings.job_ttl_seconds, limit=EXPIRE_BATCH
    )
    for job_id in expired:
        await ctx.dispatcher.remove(job_id)
    summary.expired += len(expired)
    if expired:
        logger.info("waiting jobs expired", extra={"count": len(expired)})


def _count(summary: Summary, lost: LostAttempt) -> None:
    if lost.outcome == "requeued":
        summary.requeued += 1
    elif lost.outcome == "failed":
        summary.failed += 1


async def _follow_snapshot(ctx: WorkerContext, summary: Summary) -> int:
    """Step 2; how many jobs wait once it is done."""
    snapshot = await ctx.store.jobs.dispatch_snapshot(
        limit=_running_limit(ctx),
        recent_seconds=RECENT_SECONDS,
        recent_limit=RECENT_LIMIT,
        page=SNAPSHOT_PAGE,
    )
    report = await ctx.dispatcher.sweep(
        pending=[_pending(job) for job in snapshot.pending],
        running=_running(snapshot.running),
        lease_seconds=ctx.settings.dispatch_lease_seconds,
        judge_after_seconds=ctx.settings.lease_seconds,
    )
    summary.rebuilt += report.added + report.restored
    summary.promoted += report.promoted
    summary.orphans += report.orphans
    waiting = report.waiting
    if not report.was_ready:
        logger.warning("Redis had lost the queue (flushed or new): putting back every pending job")
        try:
            added = await _rebuild_every_page(ctx)
        except Exception:
            # Not every job is back: the next sweep must walk again, and claims wait for it.
            await ctx.dispatcher.mark_not_ready()
            raise
        summary.rebuilt += added
        waiting += added
    await _settle(
        ctx, summary, report.unbacked, why="no running attempt in Postgres held its lease"
    )
    return waiting


async def _rebuild_every_page(ctx: WorkerContext) -> int:
    """After a flush: every pending job back into Redis, walking from the head of the queue a
    page per call (so they wait in queue order); from the head again if Redis is flushed once
    more meanwhile. How many went in."""
    added = 0
    after = WalkPlace.HEAD
    for _ in range(MAX_REBUILD_PAGES):
        snapshot = await ctx.store.jobs.dispatch_snapshot(
            limit=_running_limit(ctx), page=REBUILD_PAGE, after=after
        )
        # The running attempts of the same snapshot go along: a call that finds the ready mark
        # gone restores their leases before it sets the mark (claims must not resume without).
        try:
            added += await ctx.dispatcher.rebuild(
                [_pending(job) for job in snapshot.pending],
                running=_running(snapshot.running),
                lease_seconds=ctx.settings.dispatch_lease_seconds,
                continuing=after is not WalkPlace.HEAD,
            )
        except QueueNotReady:
            logger.warning("Redis lost the queue again while it was rebuilt: from the head again")
            after = WalkPlace.HEAD
            continue
        if snapshot.wrapped or snapshot.last is None:
            break
        after = snapshot.last
    return added


def _running_limit(ctx: WorkerContext) -> int:
    """How many running attempts a snapshot reads: all of them (never more than the cap)."""
    return max(1000, ctx.settings.max_active_jobs)


def _running(jobs: list[StalledJob]) -> list[RunningJob]:
    return [RunningJob(job_id=job.job_id, user_id=job.user_id, fence=job.fence) for job in jobs]


def _pending(job: DispatchableJob) -> PendingJob:
    return PendingJob(
        job_id=job.job_id,
        user_id=job.user_id,
        fence=job.fence,
        queued_at=job.queued_at,
        next_attempt_at=job.next_attempt_at,
        weight=job.weight,
        max_active_per_user=job.max_active_per_user,
        priority=job.priority,
    )


async def _housekeeping(ctx: WorkerContext, summary: Summary) -> None:
    await ctx.store.jobs.purge_idempotency_keys(
        ttl_seconds=ctx.settings.idempotency_ttl_seconds, limit=IDEMPOTENCY_PURGE_BATCH
    )
