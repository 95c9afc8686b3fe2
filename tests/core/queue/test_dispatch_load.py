"""The dispatch queue under load, through the Upstash emulator with the real upstash_redis async
client: fifty concurrent claimers against the global cap, concurrent reapers, and exact
positions and ETAs at depths of 10 and 100,000."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

import pytest
import redis
import redis.asyncio

from storyq.clients import async_redis
from storyq.config import Settings
from storyq.queue import Dispatcher, scripts
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.servers import ThreadedServer
from tests.conftest import UPSTASH_TOKEN
from tests.support.ids import job, user
from tests.support.sweeps import reap_expired

MAX_ACTIVE = 5
LEASE = 30.0


@pytest.fixture(autouse=True)
async def _empty_redis(redis_process: RedisProcess, settings_for_queue: Settings) -> None:
    redis_process.client().flushall()
    async with dispatcher(settings_for_queue) as queue:
        await queue.rebuild([])  # an empty Postgres: the queue is ready for claims


@pytest.fixture
def settings_for_queue(upstash_emulator: ThreadedServer) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        upstash_redis_rest_url=upstash_emulator.url,
        upstash_redis_rest_token=UPSTASH_TOKEN,  # type: ignore[arg-type]  # coerced to SecretStr
        upstash_rest_retries=0,
    )


@asynccontextmanager
async def dispatcher(settings: Settings) -> AsyncIterator[Dispatcher]:
    """A dispatcher on its own Upstash client, as each worker invocation has."""
    client = async_redis(settings)
    try:
        yield Dispatcher(client, max_active=MAX_ACTIVE)
    finally:
        await client.close()


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end sorts before a start at the same time)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    return peak


def commands_run(client: redis.Redis) -> dict[str, int]:
    """Commands Redis ran since the last CONFIG RESETSTAT, scripts' inner ones included."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    counts = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    return {name: calls for name, calls in counts.items() if not name.startswith("config")}


def fill_waiting(client: redis.Redis, queue: Dispatcher, count: int, user_id: UUID) -> None:
    """Queue `count` jobs of one user straight through redis-py (pipelined EVALSHA): the n-th
    is `job(f"job-{n:06}")`, held as its UUID's text, as the dispatcher would."""
    assert client.script_load(scripts.ENQUEUE.source) == scripts.ENQUEUE.sha
    k = queue.keys
    keys = [
        k.waiting,
        k.delayed,
        k.active,
        k.jobs,
        k.finish,
        k.fair,
        k.stats,
        k.held_by_user,
    ]
    for start in range(0, count, 10_000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + 10_000, count)):
            fence = n + 1  # the token Postgres would have issued
            args = (str(job(f"job-{n:06}")), str(user_id), fence, 1.0, "", 0)
            pipe.evalsha(scripts.ENQUEUE.sha, len(keys), *keys, *args)
        pipe.execute()


def expected_minutes(position: int) -> int:
    """DESIGN.md's formula with the 4.5-minute seed, computed independently of storyq.queue.eta."""
    return max(1, math.ceil(math.ceil((position + 1) / MAX_ACTIVE) * 4.5))


async def test_fifty_claimers_never_hold_more_than_five_leases(
    settings_for_queue: Settings, redis_process: RedisProcess
) -> None:
    # Given 500 jobs from 20 users, each under the fence Postgres issued for it
    fences = {job(f"job-{n:03}"): 1000 + n for n in range(500)}
    async with dispatcher(settings_for_queue) as producer:
        for n, (job_id, fence) in enumerate(fences.items()):
            await producer.enqueue(job_id, user_id=user(f"user-{n % 20}"), fence=fence)

    # When 50 workers, each with its own client, claim 1-3 jobs at a time, work a few ms,
    # heartbeat and ack, until every job is done; meanwhile Redis is sampled
    holds: list[tuple[float, float]] = []
    claimed: list[tuple[UUID, int]] = []
    stop = asyncio.Event()
    samples: list[int] = []

    async def sample_leases() -> None:
        sampler = redis.asyncio.Redis(port=redis_process.port)
        try:
            while not stop.is_set():
                samples.append(await sampler.zcard("storyq:active"))
                await asyncio.sleep(0.002)
        finally:
            await sampler.aclose()

    async def work(seed: int) -> None:
        rng = random.Random(seed)
        async with dispatcher(settings_for_queue) as queue:
            while len(claimed) < 500:
                claims = await queue.claim(rng.randint(1, 3), lease_seconds=LEASE)
                if not claims:
                    await asyncio.sleep(rng.uniform(0.02, 0.06))  # an idle worker's pause
                for claim in claims:
                    held_from = time.monotonic()
                    claimed.append((claim.job_id, claim.fence))
                    await asyncio.sleep(rng.uniform(0.002, 0.01))  # the "generation"
                    assert await queue.heartbeat(claim.job_id, claim.fence, lease_seconds=LEASE)
                    holds.append((held_from, time.monotonic()))
                    assert await queue.ack(claim.job_id, claim.fence, generation_seconds=0.01)

    sampler = asyncio.create_task(sample_leases())
    await asyncio.wait_for(asyncio.gather(*(work(seed) for seed in range(50))), timeout=120)
    stop.set()
    await sampler

    # Then no instant saw more than five leases, and the cap was used
    assert max(samples) <= MAX_ACTIVE
    assert max_overlap(holds) <= MAX_ACTIVE
    assert max_overlap(holds) == MAX_ACTIVE
    # and each job was claimed exactly once, under the fence it was queued with
    assert Counter(job_id for job_id, _ in claimed) == Counter(list(fences))
    assert dict(claimed) == fences


async def test_an_expired_lease_is_reaped_by_exactly_one_reaper(
    settings_for_queue: Settings, redis_process: RedisProcess
) -> None:
    # Given three jobs whose 0.2 s leases have lapsed by Redis's clock
    async with dispatcher(settings_for_queue) as worker:
        for n in range(3):
            await worker.enqueue(job(f"job-{n}"), user_id=user("u"), fence=n + 1)
        claims = await worker.claim(3, lease_seconds=0.2)
    direct = redis_process.client()
    expiry = max(_lease_expiry(direct, claim.job_id) for claim in claims)
    deadline = time.monotonic() + 5
    while _redis_ms(direct) <= expiry:
        assert time.monotonic() < deadline, "the leases did not lapse"
        await asyncio.sleep(0.02)

    # When ten sweepers reap at the same moment
    async def reap() -> list[UUID]:
        async with dispatcher(settings_for_queue) as sweeper:
            return [claim.job_id for claim in await reap_expired(sweeper)]

    reaped = await asyncio.gather(*(reap() for _ in range(10)))

    # Then each lapsed lease went to exactly one of them
    assert Counter(job for batch in reaped for job in batch) == Counter(c.job_id for c in claims)
    assert direct.zcard("storyq:active") == 0


def _redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _lease_expiry(client: redis.Redis, job_id: UUID) -> float:
    expiry = client.zscore("storyq:active", str(job_id))
    assert isinstance(expiry, float)
    return expiry


@pytest.mark.parametrize("depth", [10, 100_000])
async def test_position_and_eta_are_exact(
    depth: int, settings_for_queue: Settings, redis_process: RedisProcess
) -> None:
    # Given `depth` jobs of one user waiting
    direct = redis_process.client()
    async with dispatcher(settings_for_queue) as queue:
        fill_waiting(direct, queue, depth, user("u"))
        ranks = sorted({0, 1, 4, 5, 9, depth // 2, depth - 1})
        await queue.position(job("job-000000"))  # the script is cached from here on

        # When each of a few jobs asks where it stands
        direct.config_resetstat()
        positions = [await queue.position(job(f"job-{rank:06}")) for rank in ranks]
        commands = commands_run(direct)

    # Then the rank, queue length and ETA are exact
    for rank, position in zip(ranks, positions, strict=True):
        assert position is not None
        assert position.position == rank
        assert position.queue_length == depth
        assert position.active_jobs == 0
        assert position.estimated_minutes == expected_minutes(rank)
    # and each lookup ran the same five commands whatever the depth: no scan
    lookups = len(ranks)
    assert commands == {
        "evalsha": lookups,
        "zrank": lookups,
        "hmget": lookups,
        "zcard": 2 * lookups,
        "hget": lookups,
    }
