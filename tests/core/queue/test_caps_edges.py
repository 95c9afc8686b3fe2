"""Edges of the per-user running cap and the priority head start (README "Plans and tiers"):
held jobs never stranded (an unclaim, a cancel, a raised cap), one user's jobs in order, the
head start bounded (a cancelled job does not renew it), and what a held job is told (may be
overtaken, not polled as if a slot awaited it)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from storyq.queue import Claim, Dispatcher, PendingJob
from storyq_local.stack.redis_server import RedisProcess
from tests.core.queue import helpers
from tests.core.queue.helpers import finish, queue_jobs
from tests.support.ids import job, user

LEASE = 30.0
NAMES = ("free", "other", "pro")


@pytest.fixture(autouse=True)
def _empty_redis(redis_process: RedisProcess) -> None:
    redis_process.client().flushall()


def names_of(claims: list[Claim]) -> list[str]:
    return helpers.names_of(claims, NAMES)


async def test_held_job_goes_first_once_its_user_is_under_the_cap_after_an_unclaim(
    queue: Dispatcher,
) -> None:
    # Given a free user capped at 1 whose second job a claim held behind their first
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 2, fence=fence, cap=1)
    await queue_jobs(queue, "other", 10, fence=fence)
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert "free-1" not in names_of(claims)
    assert (await queue.position(job("free-1"))).held  # type: ignore[union-attr]

    # When Postgres refuses the first one's start (capacity: unclaimed) and the user then
    # cancels it while it waits again
    [first] = [c for c in claims if c.job_id == job("free-0")]
    assert await queue.unclaim(first)
    assert await queue.remove(job("free-0"))

    # Then the user runs nothing, so their held job (the oldest queued) takes the next slot
    await finish(queue, claims, "other-0")
    assert names_of(await queue.claim(1, lease_seconds=LEASE)) == ["free-1"]


async def test_cancelling_the_job_a_release_sent_back_does_not_strand_the_next_held_one(
    queue: Dispatcher,
) -> None:
    # Given a free user capped at 1 running one job, with two more held, and others' backlog
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 3, fence=fence, cap=1)
    await queue_jobs(queue, "other", 10, fence=fence)
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert (await queue.counts()).held == 2

    # When their running job ends (free-1 goes back to waiting) and they cancel free-1 before
    # any claim reaches it
    await finish(queue, claims, "free-0")
    assert await queue.remove(job("free-1"))

    # Then the user runs nothing and has nothing waiting, so their held free-2 takes a slot
    await finish(queue, claims, "other-0")
    taken = names_of(await queue.claim(2, lease_seconds=LEASE))
    assert "free-2" in taken, taken


async def test_a_raised_cap_lets_held_jobs_go_before_the_users_newer_ones(
    queue: Dispatcher,
) -> None:
    # Given a free user capped at 1 running one job, two more held, others' backlog waiting
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 3, fence=fence, cap=1)
    await queue_jobs(queue, "other", 10, fence=fence)
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert names_of(claims).count("free-0") == 1
    assert (await queue.counts()).held == 2

    # When they upgrade to a plan with cap 2: the next sweep gives the queued jobs the new cap
    # ("a cap at once") and the job they queue now carries it
    start = datetime(2026, 12, 1, tzinfo=UTC)
    pending = [
        PendingJob(
            job_id=job(f"free-{n}"),
            user_id=user("free"),
            fence=n + 1,
            queued_at=start + timedelta(seconds=n),
            max_active_per_user=2,
        )
        for n in (1, 2)
    ]
    await queue.sweep(pending=pending, running=[], lease_seconds=LEASE, judge_after_seconds=None)
    await queue_jobs(queue, "free", 1, fence=fence, cap=2, start=3)

    # Then with two slots free the user (running 1 of 2) gets one, for their oldest job: the
    # held one (one user's jobs stay FIFO), not the one queued last
    await finish(queue, claims, "other-0")
    await finish(queue, claims, "other-1")
    taken = names_of(await queue.claim(2, lease_seconds=LEASE))
    assert "free-1" in taken, taken


async def test_cancelling_the_newest_job_keeps_a_priority_users_jobs_fifo(
    queue: Dispatcher,
) -> None:
    # Given a backlog that has moved virtual time on
    fence = itertools.count(1)
    await queue_jobs(queue, "other", 20, fence=fence)
    for claim in await queue.claim(3, lease_seconds=LEASE):
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)
    # and a priority-2 user with three jobs queued
    await queue_jobs(queue, "pro", 3, fence=fence, priority=2)

    # When they cancel their newest and queue another
    assert await queue.remove(job("pro-2"))
    await queue_jobs(queue, "pro", 1, fence=fence, priority=2, start=3)

    # Then their jobs are still served in the order they were queued
    served: list[str] = []
    for _ in range(6):
        [claim] = await queue.claim(1, lease_seconds=LEASE)
        served += names_of([claim])
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)
    assert [n for n in served if n.startswith("pro")] == ["pro-0", "pro-1", "pro-3"]


async def test_a_cancelled_job_does_not_renew_the_priority_head_start(queue: Dispatcher) -> None:
    # Given another user's backlog and a priority-2 user
    fence = itertools.count(1)
    await queue_jobs(queue, "other", 40, fence=fence)
    for claim in await queue.claim(3, lease_seconds=LEASE):
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)

    # When the priority user queues one job at a time, each time queuing and cancelling a
    # decoy first (a pending cancel is free: refunded)
    served: list[str] = []
    for n in range(12):
        await queue.enqueue(
            job(f"pro-{30 + n}"), user_id=user("pro"), fence=next(fence), priority=2
        )
        assert await queue.remove(job(f"pro-{30 + n}"))
        await queue_jobs(queue, "pro", 1, fence=fence, priority=2, start=n)
        [claim] = await queue.claim(1, lease_seconds=LEASE)
        served += names_of([claim])
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)

    # Then the head start stays bounded: the waiting backlog still gets its share of slots
    assert sum(n.startswith("other") for n in served) >= 4, served


async def test_a_job_whose_user_is_at_their_cap_says_it_may_be_overtaken(
    queue: Dispatcher,
) -> None:
    # Given a user capped at 1 running one job, their next at the head of the queue, 4 slots free
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 2, fence=fence, cap=1)
    assert names_of(await queue.claim(1, lease_seconds=LEASE)) == ["free-0"]
    await queue_jobs(queue, "other", 1, fence=fence)
    before = await queue.position(job("free-1"))
    assert before is not None
    assert (before.position, before.at_user_cap) == (0, True)

    # When the next claim runs
    taken = names_of(await queue.claim(1, lease_seconds=LEASE))

    # Then the job said it could be overtaken if it was
    assert taken == ["other-0"]
    assert before.may_be_overtaken
    # and, held now, it says so again, since a later job still goes first
    held = await queue.position(job("free-1"))
    assert held is not None
    assert held.held
    await queue_jobs(queue, "other", 1, fence=fence, start=1)
    assert names_of(await queue.claim(1, lease_seconds=LEASE)) == ["other-1"]
    assert held.may_be_overtaken


async def test_a_held_job_is_not_polled_as_if_a_free_slot_awaited_it(queue: Dispatcher) -> None:
    from storyq_api.poll_hints import pending_retry_after

    # Given a held job at the head of the queue (its user at cap 1), with free slots
    fence = itertools.count(1)
    await queue_jobs(queue, "free", 2, fence=fence, cap=1)
    assert names_of(await queue.claim(1, lease_seconds=LEASE)) == ["free-0"]
    await queue_jobs(queue, "other", 2, fence=fence)
    assert names_of(await queue.claim(1, lease_seconds=LEASE)) == ["other-0"]
    held = await queue.position(job("free-1"))
    assert held is not None
    assert held.held

    # Then the poll hint is a share of its ETA (it waits for the user's own job to end), not the
    # 2 s kept for a job a free slot is about to take (README: "2 s when a free slot awaits")
    assert pending_retry_after(held, max_active=queue.max_active) > 2
