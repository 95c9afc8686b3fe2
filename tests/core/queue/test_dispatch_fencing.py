"""The dispatch queue's leases and fences, through the Upstash emulator with the real
upstash_redis async client over a real redis-server.

The contract: every entry of a job carries the fence Postgres issued for its next or running
attempt; a claim hands out the fence stored at enqueue (Redis never makes one up); a caller
holding an older fence never touches a newer attempt's entries; Redis follows what Postgres
confirmed (a heartbeat re-creates a lost lease); and nothing of a finished or removed job is
left behind. Fair share, enqueue, empty and rebuild order: test_dispatch.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
import redis
from upstash_redis.asyncio import Redis

from storyq.queue import Claim, Dispatcher, PendingJob, QueueCounts, RunningJob
from storyq_local.stack.redis_server import RedisProcess
from tests.support.ids import job, user
from tests.support.polling import eventually
from tests.support.sweeps import promote_due, reap_expired, sweep_orphans

LEASE = 30.0
SHORT_LEASE = 0.2
NOTHING = QueueCounts(waiting=0, active=0, delayed=0, avg_generation_seconds=270.0)


@pytest.fixture(autouse=True)
def _empty_redis(redis_process: RedisProcess) -> None:
    redis_process.client().flushall()


@pytest.fixture
def direct(redis_process: RedisProcess) -> redis.Redis:
    """redis-py straight to the server (decoded replies): to look at what the scripts left."""
    return redis_process.client()


def held(claims: list[Claim]) -> list[tuple[UUID, UUID | None, int]]:
    """What a claim or a reaped lease says: job, user, fence (the score is opaque)."""
    return [(claim.job_id, claim.user_id, claim.fence) for claim in claims]


async def lapsed_claim(queue: Dispatcher, job_id: UUID, *, user_id: UUID, fence: int) -> Claim:
    """Given `job_id` queued under `fence`, claimed with a short lease that lapsed and was
    reaped (the sweeper has not yet asked Postgres about it)."""
    await queue.enqueue(job_id, user_id=user_id, fence=fence)
    (claim,) = await queue.claim(1, lease_seconds=SHORT_LEASE)
    reaped = await eventually(lambda: reap_expired(queue))
    assert held(reaped) == [(job_id, user_id, fence)]
    return claim


def bookkeeping(direct: redis.Redis, queue: Dispatcher, job_id: UUID) -> dict[str, str]:
    """The job's fields in the jobs hash, by name (`user`, `fence`, `weight`), as Redis holds
    them: text (a user is its UUID's text)."""
    fields = {str(field): str(value) for field, value in direct.hgetall(queue.keys.jobs).items()}
    prefix = f"{job_id}:"
    return {
        field.removeprefix(prefix): value
        for field, value in fields.items()
        if field.startswith(prefix)
    }


# Claims carry the fence Postgres issued -----------------------------------------------------


async def test_never_more_than_max_active_leases_each_under_its_jobs_fence(
    queue: Dispatcher,
) -> None:
    # Given twenty waiting jobs, each queued under the fence Postgres issued for it
    fences = {job(f"job-{n}"): 100 + 7 * n for n in range(20)}
    for n, (job_id, fence) in enumerate(fences.items()):
        await queue.enqueue(job_id, user_id=user(f"user-{n % 3}"), fence=fence)

    # When workers ask for more than the free slots, twice
    first = await queue.claim(8, lease_seconds=LEASE)
    second = await queue.claim(8, lease_seconds=LEASE)

    # Then only five leases exist, each handing out its job's own fence, unchanged
    assert len(first) == 5
    assert second == []
    assert all(claim.fence == fences[claim.job_id] for claim in first)
    assert await queue.active_job_ids() == {claim.job_id for claim in first}


async def test_a_job_whose_bookkeeping_redis_lost_is_claimed_with_fence_zero(
    queue: Dispatcher, direct: redis.Redis
) -> None:
    # Given a waiting job whose bookkeeping was evicted
    await queue.enqueue(job("job"), user_id=user("u"), fence=9)
    direct.delete(queue.keys.jobs)

    # When it is claimed
    claims = await queue.claim(1, lease_seconds=LEASE)

    # Then the claim carries no fence Postgres could accept (it refuses the start); Redis no
    # longer knows the job's user either
    assert held(claims) == [(job("job"), None, 0)]


async def test_fences_must_be_tokens_postgres_issued(queue: Dispatcher) -> None:
    with pytest.raises(ValueError, match="fence"):
        await queue.enqueue(job("job"), user_id=user("u"), fence=0)
    with pytest.raises(ValueError, match="fence"):
        await queue.retry_later(job("job"), user_id=user("u"), fence=-1, delay_seconds=0)
    assert await queue.counts() == NOTHING


# Heartbeats ---------------------------------------------------------------------------------


async def test_a_heartbeat_keeps_a_lease_from_lapsing(
    queue: Dispatcher, direct: redis.Redis
) -> None:
    # Given a job leased for 0.2 s
    await queue.enqueue(job("job"), user_id=user("u"), fence=1)
    (claim,) = await queue.claim(1, lease_seconds=SHORT_LEASE)
    expiry = direct.zscore(queue.keys.active, str(job("job")))

    # When its worker heartbeats for another 30 s
    assert await queue.heartbeat(job("job"), claim.fence, lease_seconds=LEASE)

    # Then the lease runs 30 s from now, and the reaper leaves it
    extended = direct.zscore(queue.keys.active, str(job("job")))
    assert expiry is not None
    assert extended is not None
    assert extended - expiry > 29_000
    assert await reap_expired(queue) == []


async def test_a_heartbeat_recreates_a_lease_that_was_reaped(queue: Dispatcher) -> None:
    # Given a lease that lapsed and was reaped while its worker was alive (Postgres then said
    # the attempt is live: its heartbeat there is fresh)
    claim = await lapsed_claim(queue, job("job"), user_id=user("u"), fence=1)
    assert (await queue.counts()).active == 0

    # When its worker heartbeats
    assert await queue.heartbeat(job("job"), claim.fence, lease_seconds=LEASE, user_id=user("u"))

    # Then the lease is back, counts against the cap, and is its worker's to finish
    assert await queue.counts() == QueueCounts(
        waiting=0, active=1, delayed=0, avg_generation_seconds=270.0
    )
    assert await reap_expired(queue) == []
    assert await queue.ack(job("job"), claim.fence, generation_seconds=None)
    assert await queue.counts() == NOTHING


async def test_a_heartbeat_recreates_a_lease_redis_forgot(
    queue: Dispatcher, direct: redis.Redis
) -> None:
    # Given a running job whose lease Redis forgot (flushed after the sweep read Postgres)
    await queue.enqueue(job("job"), user_id=user("u"), fence=4)
    (claim,) = await queue.claim(1, lease_seconds=LEASE)
    direct.flushall()
    await queue.rebuild([])

    # When its worker heartbeats
    assert await queue.heartbeat(job("job"), claim.fence, lease_seconds=LEASE, user_id=user("u"))

    # Then the lease is back under its fence and counts against the cap
    assert await queue.active_job_ids() == {job("job")}
    assert bookkeeping(direct, queue, job("job")) == {"user": str(user("u")), "fence": "4"}
    assert not await queue.heartbeat(job("job"), 3, lease_seconds=LEASE, user_id=user("u"))
    assert await queue.ack(job("job"), claim.fence, generation_seconds=None)


@pytest.mark.parametrize("lost", ["reaped", "flushed"])
async def test_a_heartbeat_takes_a_running_job_out_of_the_queue_a_stale_rebuild_put_it_in(
    lost: str, queue: Dispatcher, direct: redis.Redis
) -> None:
    # Given a job claimed under fence 3 and started, whose lease was then lost
    await queue.enqueue(job("job"), user_id=user("u"), fence=3)
    if lost == "reaped":
        (claim,) = await queue.claim(1, lease_seconds=SHORT_LEASE)
        await eventually(lambda: reap_expired(queue))
    else:
        (claim,) = await queue.claim(1, lease_seconds=LEASE)
        direct.flushall()
    # and a sweep whose Postgres snapshot predates the start queued it again, same fence
    snapshot = PendingJob(job("job"), user("u"), fence=3, queued_at=datetime.now(UTC))
    assert await queue.rebuild([snapshot]) == 1
    assert await queue.position(job("job")) is not None

    # When its worker, confirmed by Postgres, heartbeats
    assert await queue.heartbeat(job("job"), claim.fence, lease_seconds=LEASE, user_id=user("u"))

    # Then it runs under its lease and waits nowhere: no second worker can claim it
    assert await queue.position(job("job")) is None
    counts = await queue.counts()
    assert (counts.waiting, counts.active, counts.delayed) == (0, 1, 0)
    assert await queue.claim(5, lease_seconds=LEASE) == []


async def test_a_lease_superseded_by_a_newer_fence_is_not_recreated(queue: Dispatcher) -> None:
    # Given a reaped lease whose attempt Postgres counted as lost: the job waits for its next
    # attempt under fence 2
    stale = await lapsed_claim(queue, job("job"), user_id=user("u"), fence=1)
    assert await queue.retry_later(job("job"), user_id=user("u"), fence=2, delay_seconds=60)

    # When the old attempt's worker heartbeats
    recreated = await queue.heartbeat(
        job("job"), stale.fence, lease_seconds=LEASE, user_id=user("u")
    )

    # Then it is told to stop, and the job still waits for its next attempt
    assert recreated is False
    assert await queue.counts() == QueueCounts(
        waiting=0, active=0, delayed=1, avg_generation_seconds=270.0
    )


# A stale attempt never touches a newer one --------------------------------------------------


async def test_a_stale_attempt_can_neither_ack_nor_heartbeat_nor_retry(
    queue: Dispatcher, direct: redis.Redis
) -> None:
    # Given a job whose attempt under fence 1 failed (Postgres issued fence 2 for the next) and
    # whose next attempt is now leased
    await queue.enqueue(job("job"), user_id=user("u"), fence=1)
    (stale,) = await queue.claim(1, lease_seconds=LEASE)
    assert await queue.retry_later(job("job"), user_id=user("u"), fence=2, delay_seconds=0)
    fresh = await eventually(lambda: queue.claim(1, lease_seconds=LEASE))
    assert held(fresh) == [(job("job"), user("u"), 2)]
    expiry = direct.zscore(queue.keys.active, str(job("job")))

    # When the first attempt's worker, back from a stall, acks, heartbeats and retries
    stale_answers = (
        await queue.ack(job("job"), stale.fence, generation_seconds=1.0),
        await queue.heartbeat(job("job"), stale.fence, lease_seconds=600, user_id=user("u")),
        await queue.retry_later(job("job"), user_id=user("u"), fence=stale.fence, delay_seconds=0),
    )

    # Then all three are refused, and the new attempt's lease is intact, not even extended
    assert stale_answers == (False, False, False)
    assert await queue.active_job_ids() == {job("job")}
    assert direct.zscore(queue.keys.active, str(job("job"))) == expiry
    assert bookkeeping(direct, queue, job("job"))["fence"] == "2"
    assert (await queue.counts()).avg_generation_seconds == 270.0  # no sample from the stale ack
    assert await queue.heartbeat(job("job"), 2, lease_seconds=LEASE)
    assert await queue.ack(job("job"), 2, generation_seconds=None)
    assert await queue.counts() == NOTHING


async def test_a_retry_takes_the_failed_attempts_lease_but_not_a_newer_one(
    queue: Dispatcher,
) -> None:
    # Given a job leased under fence 3
    await queue.enqueue(job("job"), user_id=user("u"), fence=3)
    (claim,) = await queue.claim(1, lease_seconds=LEASE)

    # When a caller that knows only an older fence asks for a retry
    assert await queue.retry_later(job("job"), user_id=user("u"), fence=2, delay_seconds=0) is False

    # Then the lease holder keeps it; and when its attempt fails (Postgres issued fence 4 for
    # the next), the retry takes the lease away and the job waits for its backoff
    assert await queue.heartbeat(job("job"), claim.fence, lease_seconds=LEASE)
    assert await queue.retry_later(job("job"), user_id=user("u"), fence=4, delay_seconds=600)
    assert await queue.counts() == QueueCounts(
        waiting=0, active=0, delayed=1, avg_generation_seconds=270.0
    )


async def test_a_failed_attempt_comes_back_after_its_backoff_under_its_new_fence(
    queue: Dispatcher,
) -> None:
    # Given a claimed job whose first attempt failed
    await queue.enqueue(job("job"), user_id=user("u"), fence=1)
    await queue.claim(1, lease_seconds=LEASE)

    # When its worker puts it back with a 0.5 s backoff under the fence of the next attempt
    assert await queue.retry_later(job("job"), user_id=user("u"), fence=2, delay_seconds=0.5)

    # Then it waits in the delayed set, not the queue, until due; then a claim takes it
    assert await queue.counts() == QueueCounts(
        waiting=0, active=0, delayed=1, avg_generation_seconds=270.0
    )
    assert await queue.position(job("job")) is None
    assert await queue.claim(1, lease_seconds=LEASE) == []
    second = await eventually(lambda: queue.claim(1, lease_seconds=LEASE))
    assert held(second) == [(job("job"), user("u"), 2)]


async def test_promote_due_moves_due_retries_to_the_queue(queue: Dispatcher) -> None:
    # Given two jobs retried with a short backoff and one with a long one
    for fence, (name, delay) in enumerate(
        (("soon-1", 0.05), ("soon-2", 0.05), ("later", 600.0)), start=1
    ):
        await queue.enqueue(job(name), user_id=user("u"), fence=fence)
        await queue.retry_later(job(name), user_id=user("u"), fence=fence + 10, delay_seconds=delay)

    # When the sweeper keeps promoting due retries until both short ones are due
    promoted = 0

    async def sweep() -> bool:
        nonlocal promoted
        promoted += await promote_due(queue)
        return promoted >= 2

    await eventually(sweep)

    # Then the two due ones wait in the queue and the other is still delayed
    assert promoted == 2
    counts = await queue.counts()
    assert (counts.waiting, counts.delayed) == (2, 1)


async def test_a_stale_enqueue_or_rebuild_changes_nothing(
    queue: Dispatcher, direct: redis.Redis
) -> None:
    # Given a job Redis knows under fence 5, its lease reaped (in no set, bookkeeping kept)
    await lapsed_claim(queue, job("job"), user_id=user("u"), fence=5)

    # When a late enqueue and a sweep from an old Postgres snapshot bring fence 4
    late = await queue.enqueue(job("job"), user_id=user("u"), fence=4)
    old = PendingJob(job("job"), user("u"), fence=4, queued_at=datetime.now(UTC))
    added = await queue.rebuild([old])

    # Then nothing changed: the job waits nowhere and Redis still knows fence 5
    assert late is None
    assert added == 0
    assert await queue.counts() == NOTHING
    assert bookkeeping(direct, queue, job("job"))["fence"] == "5"
    # while Postgres's newer word (fence 6, after the lost attempt) is taken
    newer = PendingJob(job("job"), user("u"), fence=6, queued_at=datetime.now(UTC))
    assert await queue.rebuild([newer]) == 1
    assert held(await queue.claim(1, lease_seconds=LEASE)) == [(job("job"), user("u"), 6)]


# Unclaim ------------------------------------------------------------------------------------


async def test_unclaim_puts_a_refused_claim_back_at_the_head_of_the_queue(
    queue: Dispatcher, direct: redis.Redis
) -> None:
    # Given three waiting jobs of two users, and the first one claimed
    for fence, (name, owner) in enumerate((("a-0", "A"), ("b-0", "B"), ("a-1", "A")), start=1):
        await queue.enqueue(job(name), user_id=user(owner), fence=fence)
    score = direct.zscore(queue.keys.waiting, str(job("a-0")))
    (claim,) = await queue.claim(1, lease_seconds=LEASE)
    assert claim.job_id == job("a-0")

    # When Postgres refuses to start it (the cap is reached) and the worker gives it back
    assert await queue.unclaim(claim)

    # Then its lease is gone and it waits first again, at its old score, under its fence
    assert await queue.active_job_ids() == set()
    position = await queue.position(job("a-0"))
    assert position is not None
    assert (position.position, position.queue_length) == (0, 3)
    assert direct.zscore(queue.keys.waiting, str(job("a-0"))) == score
    again = await queue.claim(1, lease_seconds=LEASE)
    assert held(again) == [(job("a-0"), user("A"), 1)]
    assert again[0].score == claim.score


async def test_a_refused_claim_stays_ahead_of_jobs_queued_after_it(queue: Dispatcher) -> None:
    # Given one user's three jobs: two served, the last claimed, refused by Postgres (the cap)
    # and given back
    for fence, name in enumerate(("a-0", "a-1", "a-2"), start=1):
        await queue.enqueue(job(name), user_id=user("A"), fence=fence)
    for claim in await queue.claim(2, lease_seconds=LEASE):
        assert await queue.ack(claim.job_id, claim.fence, generation_seconds=None)
    (refused,) = await queue.claim(1, lease_seconds=LEASE)
    assert await queue.unclaim(refused)

    # When the same user, then another one, queue a job each
    await queue.enqueue(job("a-3"), user_id=user("A"), fence=4)
    await queue.enqueue(job("b-0"), user_id=user("B"), fence=5)

    # Then the job given back is still served first, and A's jobs in the order A queued them
    served = [claim.job_id for claim in await queue.claim(5, lease_seconds=LEASE)]
    assert served[0] == job("a-2")
    assert served.index(job("a-2")) < served.index(job("a-3"))


async def test_unclaim_without_the_lease_changes_nothing(queue: Dispatcher) -> None:
    # Given a stale claim whose job's next attempt (fence 2) holds the lease now, and a claim
    # given back once already
    await queue.enqueue(job("superseded"), user_id=user("v"), fence=1)
    (stale,) = await queue.claim(1, lease_seconds=LEASE)
    assert await queue.retry_later(job("superseded"), user_id=user("v"), fence=2, delay_seconds=0)
    await eventually(lambda: queue.claim(1, lease_seconds=LEASE))
    await queue.enqueue(job("given-back"), user_id=user("u"), fence=3)
    (given_back,) = await queue.claim(1, lease_seconds=LEASE)
    assert await queue.unclaim(given_back)

    # When both are given back (again)
    answers = (await queue.unclaim(stale), await queue.unclaim(given_back))

    # Then both are refused and nothing moved: the newer attempt keeps its lease
    assert answers == (False, False)
    assert await queue.active_job_ids() == {job("superseded")}
    assert await queue.counts() == QueueCounts(
        waiting=1, active=1, delayed=0, avg_generation_seconds=270.0
    )


# Orphans and residue ------------------------------------------------------------------------


async def test_sweep_orphans_walks_the_whole_hash_and_spares_queued_jobs(
    upstash: Redis, direct: redis.Redis
) -> None:
    # Given 200 jobs whose leases were reaped and never followed up (their sweeper died), and a
    # waiting, a delayed and a leased job
    queue = Dispatcher(upstash, max_active=1000)
    await queue.rebuild([])
    orphans = [job(f"orphan-{n:03}") for n in range(200)]
    for fence, job_id in enumerate(orphans, start=1):
        await queue.enqueue(job_id, user_id=user("gone"), fence=fence)
    assert len(await queue.claim(200, lease_seconds=SHORT_LEASE)) == 200
    reaped: list[Claim] = []

    async def reap_all() -> bool:
        reaped.extend(await reap_expired(queue))
        return len(reaped) == 200

    await eventually(reap_all)
    for fence, name in enumerate(("leased", "waiting", "delayed"), start=1001):
        await queue.enqueue(job(name), user_id=user("here"), fence=fence)
    await queue.claim(1, lease_seconds=LEASE)
    await queue.retry_later(job("delayed"), user_id=user("here"), fence=1010, delay_seconds=600)

    # When the sweep forgets orphans a small step at a time until its walk comes round
    steps = [await sweep_orphans(queue, 30)]
    while direct.get(queue.keys.ready) != "0":
        assert len(steps) < 200, "the walk never came round"
        steps.append(await sweep_orphans(queue, 30))

    # Then each step was bounded, every orphan was forgotten once, the queued jobs kept theirs
    assert steps[0] < 200
    assert sum(steps) == 200
    assert all(bookkeeping(direct, queue, job_id) == {} for job_id in orphans)
    assert bookkeeping(direct, queue, job("waiting")) == {
        "user": str(user("here")),
        "fence": "1002",
        "weight": "1.0",
        "cap": "",
        "prio": "0",
    }
    assert bookkeeping(direct, queue, job("leased"))["fence"] == "1001"
    assert bookkeeping(direct, queue, job("delayed"))["fence"] == "1010"
    # and a second walk finds nothing more
    assert await sweep_orphans(queue, 10_000) == 0
    assert held(await queue.claim(1, lease_seconds=LEASE)) == [(job("waiting"), user("here"), 1002)]


async def test_no_residue_of_finished_removed_or_emptied_jobs(
    queue: Dispatcher, direct: redis.Redis
) -> None:
    # Given a job that completed, one that completed after a stale sweep had queued it again,
    # one cancelled while waiting, and a waiting and a delayed one emptied by an operator
    await queue.enqueue(job("done"), user_id=user("u"), fence=1)
    (done,) = await queue.claim(1, lease_seconds=LEASE)
    assert await queue.ack(job("done"), done.fence, generation_seconds=60.0)

    raced = await lapsed_claim(queue, job("raced"), user_id=user("u"), fence=2)
    await queue.rebuild([PendingJob(job("raced"), user("u"), fence=2, queued_at=datetime.now(UTC))])
    await queue.ack(job("raced"), raced.fence, generation_seconds=None)

    await queue.enqueue(job("cancelled"), user_id=user("v"), fence=3)
    assert await queue.remove(job("cancelled"))

    await queue.enqueue(job("emptied-waiting"), user_id=user("w"), fence=4)
    await queue.enqueue(job("emptied-delayed"), user_id=user("w"), fence=5)
    assert await queue.retry_later(
        job("emptied-delayed"), user_id=user("w"), fence=6, delay_seconds=600
    )
    assert sorted(await queue.empty()) == sorted([job("emptied-waiting"), job("emptied-delayed")])

    # Then no key mentions any of them: only the ready mark and the timing statistics remain
    names = ("done", "raced", "cancelled", "emptied-waiting", "emptied-delayed")
    jobs = {str(job(name)) for name in names}  # as Redis names them
    for key in direct.scan_iter():
        kind = direct.type(key)
        if kind == "zset":
            assert set(map(str, direct.zrange(key, 0, -1))).isdisjoint(jobs), key
        elif kind == "hash":
            assert not [f for f in map(str, direct.hkeys(key)) if f.split(":")[0] in jobs], key
    assert set(direct.scan_iter()) == {queue.keys.ready, queue.keys.stats}


async def test_a_restore_after_a_flush_never_overwrites_a_newer_fence(
    queue: Dispatcher, redis_process: RedisProcess
) -> None:
    # Given a sweep that read job X running under fence 1, then Redis was flushed, then X's
    # attempt failed and was queued for a retry under fence 2
    now = datetime.now(UTC)
    await queue.enqueue(job("x"), user_id=user("A"), fence=1)
    await queue.claim(1, lease_seconds=LEASE)
    await queue.retry_later(job("x"), user_id=user("A"), fence=2, delay_seconds=60)
    redis_process.client().delete(queue.keys.ready)  # Redis lost its state: the mark is gone

    # When that sweep rebuilds from what it read
    await queue.rebuild(
        [PendingJob(job("y"), user("B"), 3, now)],
        running=[RunningJob(job("x"), user("A"), 1)],
        lease_seconds=LEASE,
    )

    # Then X stays delayed under fence 2, with no lease nobody holds
    assert job("x") not in await queue.active_job_ids()
    assert (await queue.counts()).delayed == 1
    assert await queue.heartbeat(job("x"), 1, lease_seconds=LEASE) is False
