"""Operator actions, written once for the admin endpoints and the `storyq` admin verbs.

Each takes the store and the dispatcher (the CLI builds them from Settings with the service
role, the API from its Services) and does Postgres first, then Redis: the truth changes, then
the mirror follows, and a Redis failure is tolerated because the sweeper rebuilds the mirror.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from storyq.queue import DEFAULT_GENERATION_SECONDS, Dispatcher, Position
from storyq.store import CleanableStatus, Job, Store
from storyq_api.degrade import unless_redis_down
from storyq_api.schemas import QueueStats


@dataclass(frozen=True)
class Ops:
    store: Store
    dispatcher: Dispatcher
    timeout: float


async def queue_stats(ops: Ops) -> QueueStats:
    """Counts from Postgres (finished jobs; the truth) merged with Redis's live queue
    (waiting, active, delayed); Postgres's pending/processing stand in when Redis is down."""
    truth = await ops.store.admin.counts()
    live = await unless_redis_down("counts", ops.dispatcher.counts(), within_seconds=ops.timeout)
    mean = truth.avg_generation_seconds or DEFAULT_GENERATION_SECONDS
    if live is not None:
        # Redis's rolling mean is what the ETAs use; report the same number.
        mean = live.avg_generation_seconds
    return QueueStats(
        waiting=live.waiting if live else truth.pending,
        active=live.active if live else truth.processing,
        delayed=live.delayed if live else 0,
        completed=truth.completed,
        failed=truth.failed,
        cancelled=truth.cancelled,
        max_active=ops.dispatcher.max_active,
        avg_generation_seconds=round(mean, 3),
        oldest_pending_at=truth.oldest_pending_at,
        source="redis" if live else "postgres",
    )


async def clean(ops: Ops, *, status: CleanableStatus, older_than_seconds: float) -> int:
    """Delete finished job rows (never stories); Redis holds none of them."""
    return await ops.store.admin.clean(status, older_than_seconds=older_than_seconds)


async def empty_queue(ops: Ops) -> list[UUID]:
    """Cancel and refund every pending job, then drop them from Redis.

    A job Redis still lists afterwards (Redis was down) cannot run: starting it is refused in
    Postgres because it is cancelled.
    """
    cancelled = await ops.store.admin.empty()
    await unless_redis_down("empty", ops.dispatcher.empty(), within_seconds=ops.timeout)
    return cancelled


async def retry_job(ops: Ops, job_id: UUID) -> tuple[Job, Position | None]:
    """A failed job back to pending under a new fence (nothing charged again), then into the
    Redis queue."""
    job = await ops.store.admin.retry_failed(job_id)
    position = await unless_redis_down(
        "enqueue",
        ops.dispatcher.enqueue(str(job.job_id), user_id=str(job.user_id), fence=job.fence),
        within_seconds=ops.timeout,
    )
    return job, position


async def grant_credits(ops: Ops, *, user_id: UUID, amount: int) -> int:
    """Add credits to a user's balance (a ledger entry); the new balance."""
    return await ops.store.credits.grant(user_id, amount, reason="admin grant")
