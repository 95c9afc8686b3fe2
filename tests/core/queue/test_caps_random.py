"""Random runs of the queue's operations with per-user caps, checking after every step what
must always hold: each job in exactly one place, the held jobs listed per user exactly as the
waiting set holds them, each user's count of waiting jobs right, no lease past a cap while a
job of a user under theirs waits, and nothing left in Redis once every job is done."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from uuid import UUID

import pytest
import redis

from storyq.queue import Claim, Dispatcher
from storyq_local.stack.redis_server import RedisProcess
from tests.support.ids import job, user

LEASE = 30.0
HELD_OFFSET = 2**52  # common.lua: a held job waits at its own score + 2^52
USERS = {"a": 1, "b": 2, "c": None, "d": 1}


@pytest.fixture(autouse=True)
def _empty_redis(redis_process: RedisProcess) -> None:
    redis_process.client().flushall()


def scores(direct: redis.Redis, key: str) -> dict[UUID, float]:
    """The members of a sorted set of job ids, with their scores."""
    reply = direct.zrange(key, 0, -1, withscores=True)
    return {UUID(str(item[0])): float(item[1]) for item in reply}


def check(direct: redis.Redis, queue: Dispatcher, owner: dict[UUID, str]) -> None:
    k = queue.keys
    waiting = scores(direct, k.waiting)
    delayed = {UUID(str(m)) for m in direct.zrange(k.delayed, 0, -1)}
    active = {UUID(str(m)) for m in direct.zrange(k.active, 0, -1)}
    assert not set(waiting) & delayed
    assert not set(waiting) & active
    assert not delayed & active
    held = {job_id for job_id, score in waiting.items() if score >= HELD_OFFSET}
    listed = {UUID(str(m).rsplit(":", 1)[1]) for m in direct.zrange(k.held_by_user, 0, -1)}
    assert listed == held
    fair = {str(f): int(v) for f, v in direct.hgetall(k.fair).items() if str(f).startswith("n:")}
    expected = Counter(f"n:{user(owner[job_id])}" for job_id in waiting)
    assert fair == dict(expected)


def check_caps(
    direct: redis.Redis,
    queue: Dispatcher,
    owner: dict[UUID, str],
    running: list[Claim],
    claims: list[Claim],
) -> None:
    """Each claim past its user's cap was a borrow: no job of another user under their cap was
    left waiting (not held) by the claim."""
    now = Counter(owner[c.job_id] for c in running)
    waiting_after = [
        owner[job_id]
        for job_id, score in scores(direct, queue.keys.waiting).items()
        if score < HELD_OFFSET
    ]
    for claim in claims:
        who = owner[claim.job_id]
        cap = USERS[who]
        if cap is not None and now[who] >= cap:
            for other in waiting_after:
                other_cap = USERS[other]
                if other != who:
                    assert other_cap is not None
                    assert now[other] >= other_cap
        now[who] += 1


@pytest.mark.parametrize("seed", range(6))
async def test_random_operations_keep_the_queue_whole(
    seed: int, queue: Dispatcher, redis_process: RedisProcess
) -> None:
    rng = random.Random(seed)
    direct = redis_process.client()
    fence = itertools.count(1)
    owner: dict[UUID, str] = {}
    running: list[Claim] = []
    queued: list[UUID] = []
    for step in range(250):
        roll = rng.random()
        if roll < 0.35:
            who = rng.choice(list(USERS))
            job_id = job(f"{who}-{seed}-{step}")
            owner[job_id] = who
            queued.append(job_id)
            await queue.enqueue(
                job_id, user_id=user(who), fence=next(fence), max_active_per_user=USERS[who]
            )
        elif roll < 0.6:
            claims = await queue.claim(rng.randint(1, 3), lease_seconds=LEASE)
            check_caps(direct, queue, owner, running, claims)
            for claim in claims:
                assert claim.job_id in queued, (step, claim)  # leased once, only if waiting
                queued.remove(claim.job_id)
            running += claims
        elif roll < 0.8 and running:
            done = running.pop(rng.randrange(len(running)))
            assert await queue.ack(done.job_id, done.fence, generation_seconds=None)
        elif roll < 0.88 and running:
            back = running.pop(rng.randrange(len(running)))
            assert await queue.unclaim(back)
            queued.append(back.job_id)
        elif queued:
            assert await queue.remove(queued.pop(rng.randrange(len(queued))))
        check(direct, queue, owner)

    # When everything left is served and finished
    for _ in range(500):
        running += await queue.claim(5, lease_seconds=LEASE)
        if not running:
            break
        done = running.pop(0)
        assert await queue.ack(done.job_id, done.fence, generation_seconds=None)
        check(direct, queue, owner)

    # Then nothing is left behind
    assert not running
    leftovers = {str(key) for key in direct.keys("storyq:*")} - {"storyq:ready", "storyq:stats"}
    assert leftovers == set()
