"""Plan tiers in the dispatch queue, through the Upstash emulator with the real upstash_redis
client over a real redis-server: a user's weight sets their share of the slots while others
wait, and their running cap (max_active_per_user) holds across claims and through a flush,
without idling a slot another user's job could take."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime

import pytest

from storyq.queue import Claim, Dispatcher, PendingJob, RunningJob
from storyq_local.stack.redis_server import RedisProcess
from tests.support.ids import job, user

LEASE = 30.0


@pytest.fixture(autouse=True)
def _empty_redis(redis_process: RedisProcess) -> None:
    redis_process.client().flushall()


async def queue_jobs(
    queue: Dispatcher,
    who: str,
    count: int,
    *,
    fence: itertools.count[int],
    weight: float = 1.0,
    cap: int | None = None,
) -> list[str]:
    names = [f"{who}-{n}" for n in range(count)]
    for name in names:
        await queue.enqueue(
            job(name),
            user_id=user(who),
            fence=next(fence),
            weight=weight,
            max_active_per_user=cap,
        )
    return names


def owners(claims: list[Claim]) -> Counter[str]:
    names = {user(who): who for who in ("free", "plus", "pro", "flood", "other", "solo")}
    return Counter(names[claim.user_id] for claim in claims if claim.user_id is not None)


async def test_a_user_at_their_cap_is_passed_over_while_others_wait(queue: Dispatcher) -> None:
    # Given a user capped at one running job who queued first, and another user without a cap
    fence = itertools.count(1)
    await queue_jobs(queue, "flood", 4, fence=fence, cap=1)
    await queue_jobs(queue, "other", 6, fence=fence)

    # When a worker claims five slots
    claims = await queue.claim(5, lease_seconds=LEASE)

    # Then the capped user got one, the other user the rest
    assert owners(claims) == Counter({"flood": 1, "other": 4})

    # And when one of the other user's jobs ends, its slot goes to them again, not to the
    # capped user although their job is older
    done = next(claim for claim in claims if claim.user_id == user("other"))
    assert await queue.ack(done.job_id, done.fence, generation_seconds=None)
    [next_claim] = await queue.claim(5, lease_seconds=LEASE)
    assert next_claim.job_id == job("other-4")

    # And once the capped user's job ends, their next one is served, in their own order
    first = next(claim for claim in claims if claim.user_id == user("flood"))
    assert first.job_id == job("flood-0")
    assert await queue.ack(first.job_id, first.fence, generation_seconds=None)
    [following] = await queue.claim(5, lease_seconds=LEASE)
    assert following.job_id == job("flood-1")


async def test_a_lone_capped_user_gets_every_free_slot(queue: Dispatcher) -> None:
    # Work-conserving: with nobody else to serve, the cap does not idle a slot
    fence = itertools.count(1)
    await queue_jobs(queue, "solo", 6, fence=fence, cap=2)
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert [claim.job_id for claim in claims] == [job(f"solo-{n}") for n in range(5)]


async def test_a_capped_user_takes_only_the_slots_others_leave(queue: Dispatcher) -> None:
    fence = itertools.count(1)
    await queue_jobs(queue, "flood", 4, fence=fence, cap=1)
    await queue_jobs(queue, "other", 2, fence=fence)
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert owners(claims) == Counter({"flood": 3, "other": 2})


async def test_the_cap_holds_through_a_flush(
    queue: Dispatcher, redis_process: RedisProcess
) -> None:
    # Given a capped user with one job running and two waiting, and Redis then flushed
    fence = itertools.count(1)
    await queue_jobs(queue, "flood", 3, fence=fence, cap=1)
    [running] = await queue.claim(1, lease_seconds=LEASE)
    redis_process.client().flushall()

    # When a sweep rebuilds Redis from Postgres: the running attempt, the capped user's pending
    # jobs (with the plan's cap) and four of another user's
    now = datetime.now(UTC)
    pending = [
        PendingJob(
            job_id=job(f"flood-{n}"),
            user_id=user("flood"),
            fence=10 + n,
            queued_at=now,
            max_active_per_user=1,
        )
        for n in (1, 2)
    ] + [
        PendingJob(job_id=job(f"other-{n}"), user_id=user("other"), fence=20 + n, queued_at=now)
        for n in range(4)
    ]
    await queue.rebuild(
        pending,
        running=[RunningJob(job_id=running.job_id, user_id=user("flood"), fence=running.fence)],
    )

    # Then the restored lease counts against the cap: the four free slots go to the other user
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert owners(claims) == Counter({"other": 4})


async def test_weights_share_the_slots_while_everyone_waits(queue: Dispatcher) -> None:
    # Given three users of weights 1, 2 and 4, each with a long backlog
    fence = itertools.count(1)
    for who, weight in (("free", 1.0), ("plus", 2.0), ("pro", 4.0)):
        await queue_jobs(queue, who, 60, fence=fence, weight=weight)

    # When 70 jobs are served, five slots (the global cap) at a time
    served: list[Claim] = []
    for _ in range(14):
        claims = await queue.claim(5, lease_seconds=LEASE)
        served += claims
        for claim in claims:
            assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)

    # Then each got slots in proportion to their weight: 10, 20 and 40
    assert owners(served) == Counter({"free": 10, "plus": 20, "pro": 40})
