"""What one worker invocation (or the local runner) works with: clients, store, dispatcher,
generator and retry policy, built from Settings and closed when the work is done."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from storyq.clients import async_postgrest, async_redis
from storyq.config import Settings
from storyq.generation import Generator, build_generator
from storyq.kick import WorkerKicker
from storyq.queue import Dispatcher
from storyq.queue.backoff import Backoff, retry_delay
from storyq.store import Store
from storyq_worker.heartbeats import HeartbeatBatcher
from storyq_worker.writer import StoryWriter

# Postgres is cheap to tell and shows progress: each attempt's heartbeat goes at least this
# often (lease / 4 when that is shorter), in one request per process and tick. The answer is
# also how an attempt hears of a cancel, which must stop its generation within 2 s: a tick
# of 1 s leaves a second for the request that carries it and the generation's end.
PROGRESS_SECONDS = 1.0
# The story's text goes to its row at least this often while it flows (and at each paragraph's
# end): within the 2 s readers are promised, with each write a whole new row version (content
# is rewritten, not appended in place), so not every tick.
TEXT_SECONDS = 1.5


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    store: Store
    dispatcher: Dispatcher
    generator: Generator
    backoff: Backoff
    kicker: WorkerKicker
    heartbeats: HeartbeatBatcher
    writer: StoryWriter

    def retry_delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds before the next attempt: exponential backoff with jitter, Retry-After as
        a floor."""
        return retry_delay(max(1, attempt), retry_after=retry_after, policy=self.backoff)


def backoff_policy(settings: Settings) -> Backoff:
    return Backoff(
        base_seconds=settings.retry_base_seconds,
        max_seconds=max(settings.retry_base_seconds, settings.retry_max_seconds),
    )


@asynccontextmanager
async def open_context(
    settings: Settings, *, generator: Generator | None = None, kicker: WorkerKicker | None = None
) -> AsyncIterator[WorkerContext]:
    """Clients for one event loop (a Lambda invocation runs its own), closed on the way out.

    `generator` replaces the one GENERATOR names, `kicker` the one WORKER_FUNCTION_NAME makes
    (tests inject theirs here)."""
    redis = async_redis(settings)
    db = async_postgrest(settings)
    store = Store(db)
    heartbeats = HeartbeatBatcher(
        store,
        every_seconds=min(PROGRESS_SECONDS, settings.lease_seconds / 4),
        # Half the time an attempt may go unconfirmed before it stops itself (lease.SELF_FENCE).
        request_timeout_seconds=settings.lease_seconds / 3,
    )
    writer = StoryWriter(
        store,
        every_seconds=TEXT_SECONDS,
        timeout_seconds=settings.http_timeout_seconds,
    )
    try:
        yield WorkerContext(
            settings=settings,
            store=store,
            dispatcher=Dispatcher(
                redis,
                max_active=settings.max_active_jobs,
                timeout_seconds=settings.http_timeout_seconds,
            ),
            generator=generator or build_generator(settings),
            backoff=backoff_policy(settings),
            kicker=kicker
            or WorkerKicker(settings.worker_function_name, timeout=settings.http_timeout_seconds),
            heartbeats=heartbeats,
            writer=writer,
        )
    finally:
        await writer.close()
        await heartbeats.close()
        await redis.close()
        await db.aclose()
