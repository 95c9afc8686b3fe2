"""The dispatch queue's behaviour, through the Upstash emulator with the real upstash_redis
async client over a real redis-server: fair share (also after cancels), enqueue, cancel, empty,
counts, the rolling mean, and rebuild after FLUSHALL. Leases and fences: test_dispatch_fencing.

Every job is queued under the fence Postgres issued for its next attempt; these tests number
the fences themselves (any positive token that only grows will do)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from upstash_redis.asyncio import Redis

from storyq.queue import Claim, Dispatcher, PendingJob, QueueCounts, QueueNotReady, RunningJob
from storyq_local.stack.redis_server import RedisProcess
from tests.support.ids import job, user

LEASE = 30.0


@pytest.fixture(autouse=True)
def _empty_redis(redis_process: RedisProcess) -> None:
    redis_process.client().flushall()


def fences() -> Callable[[], int]:
    """Fencing tokens as Postgres issues them: one sequence, only ever growing."""
    return itertools.count(1).__next__


async def claim_round(queue: Dispatcher) -> list[Claim]:
    """One round of the worker: fill every free slot, then finish every claimed job."""
    claims = await queue.claim(queue.max_active, lease_seconds=LEASE)
    for claim in claims:
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)
    return claims


# Fair share -------------------------------------------------------------------------------


async def test_a_late_user_is_served_within_two_rounds_not_after_fifty_jobs(
    queue: Dispatcher,
) -> None:
    # Given user A queued fifty jobs, then users B and C one each
    fence = fences()
    for n in range(50):
        await queue.enqueue(job(f"a-{n}"), user_id=user("A"), fence=fence())
    await queue.enqueue(job("b-0"), user_id=user("B"), fence=fence())
    await queue.enqueue(job("c-0"), user_id=user("C"), fence=fence())

    # When the workers run two rounds of five slots
    served = [claim.job_id for _ in range(2) for claim in await claim_round(queue)]

    # Then B's and C's jobs were among them
    assert {job("b-0"), job("c-0")} <= set(served)
    assert len(served) == 10


async def test_a_lone_user_is_served_first_in_first_out_and_gets_every_slot(
    queue: Dispatcher,
) -> None:
    # Given one user queued twenty jobs
    jobs = [job(f"job-{n:02}") for n in range(20)]
    for fence, job_id in enumerate(jobs, start=1):
        await queue.enqueue(job_id, user_id=user("solo"), fence=fence)

    # When the workers drain the queue
    first_round = await queue.claim(10, lease_seconds=LEASE)
    served = [claim.job_id for claim in first_round]
    for claim in first_round:
        await queue.ack(claim.job_id, claim.fence, generation_seconds=None)
    while claims := await claim_round(queue):
        served += [claim.job_id for claim in claims]

    # Then all five slots went to that user at once, in the order the jobs were queued
    assert len(first_round) == 5
    assert served == jobs


async def test_weight_two_gets_twice_the_slots_of_weight_one(queue: Dispatcher) -> None:
    # Given a weight-2 user and a weight-1 user each keep a hundred jobs queued
    fence = fences()
    for n in range(100):
        await queue.enqueue(job(f"pro-{n}"), user_id=user("pro"), fence=fence(), weight=2.0)
        await queue.enqueue(job(f"free-{n}"), user_id=user("free"), fence=fence())

    # When ninety slots are served
    served = [claim.user_id for _ in range(18) for claim in await claim_round(queue)]

    # Then the weight-2 user got two thirds of them
    assert served.count(user("pro")) == 60
    assert served.count(user("free")) == 30


async def test_a_user_who_cancelled_everything_is_not_served_later_for_it(
    queue: Dispatcher,
) -> None:
    # Given user A queued twenty jobs and cancelled every one of them
    fence = fences()
    for n in range(20):
        await queue.enqueue(job(f"a-{n}"), user_id=user("A"), fence=fence())
    for n in range(20):
        assert await queue.remove(job(f"a-{n}"))

    # When user B queues five jobs, then A queues one
    for n in range(5):
        await queue.enqueue(job(f"b-{n}"), user_id=user("B"), fence=fence())
    position = await queue.enqueue(job("a-new"), user_id=user("A"), fence=fence())

    # Then A's job is second, right after B's first, not behind all of B's
    assert position is not None
    assert (position.position, position.queue_length) == (1, 6)
    served = [claim.job_id for _ in range(2) for claim in await claim_round(queue)]
    assert served[:3] == [job("b-0"), job("a-new"), job("b-1")]


async def test_cancelled_jobs_give_back_their_share_while_others_wait(queue: Dispatcher) -> None:
    # Given users A (twenty jobs) and B (five jobs) queued side by side
    fence = fences()
    for n in range(20):
        await queue.enqueue(job(f"a-{n}"), user_id=user("A"), fence=fence())
        if n < 5:
            await queue.enqueue(job(f"b-{n}"), user_id=user("B"), fence=fence())

    # When A cancels all twenty, then queues one more
    for n in range(20):
        assert await queue.remove(job(f"a-{n}"))
    position = await queue.enqueue(job("a-new"), user_id=user("A"), fence=fence())

    # Then A's new job takes its turn among B's, not after a queue of phantom jobs
    assert position is not None
    assert (position.position, position.queue_length) == (1, 6)


async def test_one_users_jobs_stay_first_in_first_out_after_a_cancel(queue: Dispatcher) -> None:
    # Given one user queued three jobs and cancelled the first two
    fence = fences()
    for name in ("first", "second", "third"):
        await queue.enqueue(job(name), user_id=user("u"), fence=fence())
    for name in ("first", "second"):
        assert await queue.remove(job(name))

    # When they queue a fourth
    await queue.enqueue(job("fourth"), user_id=user("u"), fence=fence())

    # Then the third is still served before the fourth
    served = [claim.job_id for claim in await claim_round(queue)]
    assert served == [job("third"), job("fourth")]


# Enqueue, position, remove, empty, counts -------------------------------------------------


async def test_enqueue_is_idempotent(queue: Dispatcher) -> None:
    # Given a waiting job, a leased job and a delayed job (its next attempt under fence 4)
    await queue.enqueue(job("leased"), user_id=user("u"), fence=1)
    (claim,) = await queue.claim(1, lease_seconds=LEASE)
    await queue.enqueue(job("waiting"), user_id=user("u"), fence=2)
    await queue.enqueue(job("delayed"), user_id=user("u"), fence=3)
    await queue.retry_later(job("delayed"), user_id=user("u"), fence=4, delay_seconds=600)

    # When each is enqueued again under the fence it was queued with
    again = [
        await queue.enqueue(job(name), user_id=user("u"), fence=fence)
        for name, fence in (("waiting", 2), ("leased", 1), ("delayed", 4))
    ]

    # Then the waiting one reports its place, the others are left as they were
    waiting_position, leased, delayed = again
    assert waiting_position is not None
    assert (waiting_position.position, waiting_position.queue_length) == (0, 1)
    assert leased is None
    assert delayed is None
    assert await queue.counts() == QueueCounts(
        waiting=1, active=1, delayed=1, avg_generation_seconds=270.0
    )
    assert await queue.heartbeat(job("leased"), claim.fence, lease_seconds=LEASE)


async def test_cancel_removes_waiting_and_delayed_jobs_but_not_leased_ones(
    queue: Dispatcher,
) -> None:
    # Given a waiting, a delayed and a leased job
    for fence, name in enumerate(("running", "waiting", "delayed"), start=1):
        await queue.enqueue(job(name), user_id=user("u"), fence=fence)
    await queue.claim(1, lease_seconds=LEASE)
    await queue.retry_later(job("delayed"), user_id=user("u"), fence=4, delay_seconds=600)

    # When each is cancelled
    removed = {name: await queue.remove(job(name)) for name in ("running", "waiting", "delayed")}

    # Then only the leased one stays
    assert removed == {"running": False, "waiting": True, "delayed": True}
    assert await queue.position(job("waiting")) is None
    assert await queue.active_job_ids() == {job("running")}
    assert (await queue.counts()).waiting == 0


async def test_empty_removes_every_waiting_and_delayed_job(queue: Dispatcher) -> None:
    # Given one leased, three waiting and one delayed job
    for n in range(5):
        await queue.enqueue(job(f"job-{n}"), user_id=user("u"), fence=n + 1)
    await queue.claim(1, lease_seconds=LEASE)
    await queue.retry_later(job("job-4"), user_id=user("u"), fence=6, delay_seconds=600)

    # When the queue is emptied
    removed = await queue.empty()

    # Then it names the four it removed, in queue order, and leaves the lease
    assert removed == [job("job-1"), job("job-2"), job("job-3"), job("job-4")]
    assert await queue.counts() == QueueCounts(
        waiting=0, active=1, delayed=0, avg_generation_seconds=270.0
    )


async def test_the_mean_generation_time_follows_finished_jobs(queue: Dispatcher) -> None:
    # Given ten waiting jobs and no finished job yet: the mean is the 4.5-minute seed
    for n in range(10):
        await queue.enqueue(job(f"job-{n}"), user_id=user("u"), fence=n + 1)
    assert (await queue.counts()).avg_generation_seconds == 270.0

    # When two jobs finish in 120 s and 180 s, and one fails for good without a time
    claims = await queue.claim(3, lease_seconds=LEASE)
    for claim, seconds in zip(claims, (120.0, 180.0, None), strict=True):
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=seconds)

    # Then the mean is theirs, and the ETA uses it: rank 6 waits 2 rounds x 150 s = 5 min
    assert (await queue.counts()).avg_generation_seconds == 150.0
    position = await queue.position(job("job-9"))
    assert position is not None
    assert (position.position, position.queue_length, position.active_jobs) == (6, 7, 0)
    assert position.estimated_minutes == 5


async def test_a_script_cache_flush_is_survived(
    queue: Dispatcher, redis_process: RedisProcess
) -> None:
    # Given Redis forgot every script (a restart or failover)
    await queue.enqueue(job("job-0"), user_id=user("u"), fence=1)
    redis_process.client().script_flush()

    # When the queue is used again
    position = await queue.enqueue(job("job-1"), user_id=user("u"), fence=2)

    # Then the call falls back to EVAL and works
    assert position is not None
    assert position.position == 1


# Rebuild ----------------------------------------------------------------------------------


async def test_rebuild_after_flushall_restores_the_queue_in_order(
    queue: Dispatcher, redis_process: RedisProcess
) -> None:
    # Given a queue of twelve jobs from three users, as Postgres also records them
    start = datetime(2026, 11, 1, tzinfo=UTC)
    pending = [
        PendingJob(
            job(f"job-{n:02}"), user(f"user-{n % 3}"), fence=n + 1, queued_at=start + timedelta(s)
        )
        for n, s in enumerate(range(0, 120, 10))
    ]
    for queued in pending:
        await queue.enqueue(queued.job_id, user_id=queued.user_id, fence=queued.fence)
    order = redis_process.client().zrange(queue.keys.waiting, 0, -1)

    # When Redis loses everything and the sweeper rebuilds from Postgres's pending jobs
    redis_process.client().flushall()
    added = await queue.rebuild(random.Random(4).sample(pending, k=len(pending)))

    # Then the queue is back, in the same order, each job under its fence
    assert added == 12
    assert redis_process.client().zrange(queue.keys.waiting, 0, -1) == order
    claimed = [claim for _ in range(3) for claim in await claim_round(queue)]
    assert {claim.job_id: claim.fence for claim in claimed} == {
        queued.job_id: queued.fence for queued in pending
    }


async def test_rebuild_adds_only_what_redis_lacks(queue: Dispatcher) -> None:
    # Given Redis holds one leased, one waiting and one delayed job of five pending ones
    now = datetime.now(UTC)
    pending = [
        PendingJob(job("leased"), user("u"), fence=1, queued_at=now - timedelta(minutes=5)),
        PendingJob(job("waiting"), user("u"), fence=2, queued_at=now - timedelta(minutes=4)),
        PendingJob(job("delayed"), user("u"), fence=6, queued_at=now - timedelta(minutes=3)),
        PendingJob(job("lost"), user("v"), fence=7, queued_at=now - timedelta(minutes=2)),
        PendingJob(
            job("lost-retry"),
            user("v"),
            fence=8,
            queued_at=now - timedelta(minutes=1),
            next_attempt_at=now + timedelta(minutes=10),
        ),
    ]
    for fence, name in enumerate(("leased", "waiting", "delayed"), start=1):
        await queue.enqueue(job(name), user_id=user("u"), fence=fence)
    await queue.claim(1, lease_seconds=LEASE)
    await queue.retry_later(job("delayed"), user_id=user("u"), fence=6, delay_seconds=600)

    # When the sweeper rebuilds, twice
    added = [await queue.rebuild(pending), await queue.rebuild(pending)]

    # Then the two lost jobs came back once (the future retry as delayed), nothing doubled
    assert added == [2, 0]
    assert await queue.counts() == QueueCounts(
        waiting=2, active=1, delayed=2, avg_generation_seconds=270.0
    )
    claimed = await queue.claim(5, lease_seconds=LEASE)
    assert [(claim.job_id, claim.fence) for claim in claimed] == [
        (job("waiting"), 2),
        (job("lost"), 7),
    ]


async def test_after_a_flush_nothing_is_claimed_until_the_queue_is_rebuilt(
    queue: Dispatcher, redis_process: RedisProcess
) -> None:
    # Given a job waiting, then Redis flushed (as an eviction or an operator could)
    await queue.enqueue(job("waiting-job"), user_id=user("u"), fence=1)
    redis_process.client().flushall()
    await queue.enqueue(job("after-flush"), user_id=user("u"), fence=2)

    # Then claims are refused until a rebuild from Postgres
    with pytest.raises(QueueNotReady):
        await queue.claim(5, lease_seconds=LEASE)
    await queue.rebuild([])
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert [claim.job_id for claim in claims] == [job("after-flush")]


async def test_restored_leases_hold_their_slots_and_their_holders_keep_them(
    upstash: Redis, redis_process: RedisProcess
) -> None:
    # Given two jobs running (Postgres says processing, under fences 11 and 12) when Redis was
    # flushed
    queue = Dispatcher(upstash, max_active=3)
    redis_process.client().flushall()
    for index in range(5):
        await queue.enqueue(job(f"new-{index}"), user_id=user("u"), fence=index + 1)

    # When the sweep rebuilds with the running jobs
    await queue.rebuild(
        [],
        running=[
            RunningJob(job("run-a"), user("u"), fence=11),
            RunningJob(job("run-b"), user("v"), fence=12),
        ],
        lease_seconds=LEASE,
    )

    # Then they count against the cap: only one new job may start
    claims = await queue.claim(5, lease_seconds=LEASE)
    assert len(claims) == 1
    assert (await queue.counts()).active == 3
    # And their workers' fences still hold the leases
    assert await queue.heartbeat(job("run-b"), 12, lease_seconds=LEASE)
    assert not await queue.heartbeat(job("run-b"), 10, lease_seconds=LEASE)
    assert await queue.ack(job("run-a"), 11, generation_seconds=None)
    # And while Redis keeps its state, a rebuild restores nothing (Redis is trusted, so a job
    # that finished while the sweep read Postgres does not get a lease back)
    await queue.rebuild(
        [], running=[RunningJob(job("finished"), user("v"), fence=13)], lease_seconds=LEASE
    )
    assert (await queue.counts()).active == 2
