"""The global cap across a Redis flush that lands in the middle of a sweep.

A sweep reads Postgres (the running jobs, then the pending ones), then rebuilds the queue. A
FLUSHALL can land anywhere in between; the rebuild always carries the running jobs, and its
script decides atomically (no ready mark: Redis lost its state) to restore their leases before
it marks the queue ready, so claims never start more generations than the cap beside those
still running. (It once decided from an earlier `is_ready()` question, and a flush between the
question and the rebuild let ten run at once.) Driven here step by step with the real
Dispatcher over the Upstash emulator, on a queue prefix of its own.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from storyq.clients import async_redis
from storyq.config import Settings
from storyq.queue import Dispatcher, PendingJob, RunningJob
from tests.conftest import UPSTASH_TOKEN
from tests.reliability.conftest import MAX_ACTIVE_JOBS, Stack


@pytest.fixture
async def dispatcher(stack: Stack) -> AsyncIterator[Dispatcher]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        upstash_redis_rest_url=stack.upstash.url,
        upstash_redis_rest_token=UPSTASH_TOKEN,  # type: ignore[arg-type]  # coerced to SecretStr
        upstash_rest_retries=0,
    )
    redis = async_redis(settings)
    yield Dispatcher(redis, max_active=MAX_ACTIVE_JOBS, prefix=f"race-{uuid.uuid4().hex[:8]}")
    await redis.close()


_fences = itertools.count(1)


def _pending(count: int) -> list[PendingJob]:
    user = uuid.uuid4()
    now = datetime.now(UTC)
    return [
        PendingJob(job_id=uuid.uuid4(), user_id=user, fence=next(_fences), queued_at=now)
        for _ in range(count)
    ]


def _forget_everything(stack: Stack, dispatcher: Dispatcher) -> None:
    """FLUSHALL, limited to this test's queue keys."""
    client = stack.redis.client()
    keys = list(client.scan_iter(f"{dispatcher.keys.prefix}:*"))
    if keys:
        client.delete(*keys)


async def test_a_flush_during_a_sweep_does_not_reopen_claims_past_the_cap(
    stack: Stack, dispatcher: Dispatcher
) -> None:
    # Given five generations running (leased) and five more jobs waiting
    first = _pending(MAX_ACTIVE_JOBS)
    await dispatcher.rebuild(first)
    owners = {job.job_id: job.user_id for job in first}
    running = await dispatcher.claim(MAX_ACTIVE_JOBS, lease_seconds=60)
    assert len(running) == MAX_ACTIVE_JOBS
    waiting = _pending(MAX_ACTIVE_JOBS)
    await dispatcher.rebuild(waiting)

    # And a sweep that has read Postgres while the queue was whole
    assert await dispatcher.is_ready()
    from_postgres = [
        RunningJob(job_id=claim.job_id, user_id=owners[claim.job_id], fence=claim.fence)
        for claim in running
    ]

    # When Redis is flushed before that sweep's rebuild runs
    _forget_everything(stack, dispatcher)
    await dispatcher.rebuild(waiting, running=from_postgres, lease_seconds=60)

    # Then no claim may start a sixth generation while the five are still running
    extra = await dispatcher.claim(MAX_ACTIVE_JOBS, lease_seconds=60)
    assert extra == []
