"""Plan tiers in the dispatch queue, through the Upstash emulator with the real upstash_redis
client over a real redis-server: a user's weight sets their share of the slots while others
wait."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from storyq.queue import Claim, Dispatcher
from storyq_local.stack.redis_server import RedisProcess
from tests.core.queue.helpers import queue_jobs
from tests.support.ids import user

LEASE = 30.0


@pytest.fixture(autouse=True)
def _empty_redis(redis_process: RedisProcess) -> None:
    redis_process.client().flushall()


def owners(claims: list[Claim]) -> Counter[str]:
    names = {user(who): who for who in ("free", "plus", "pro", "flood", "other", "solo")}
    return Counter(names[claim.user_id] for claim in claims if claim.user_id is not None)


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
