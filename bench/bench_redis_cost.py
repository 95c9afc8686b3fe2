"""What the dispatch queue costs on Upstash, which bills per command.

Measures, against a private redis-server behind the Upstash emulator with the real async SDK:
- Upstash HTTP requests (counted at the emulator) and Redis commands (INFO commandstats, which
  counts the commands run inside scripts as well as the EVALSHA itself) for one job's life:
  enqueue -> claim -> 1 heartbeat -> ack, step by step; plus an idle claim and an idle sweep;
- one position lookup at depth 10 and 100,000: the SDK round trip (median of 200) and Redis's
  own time per EVALSHA.

Run from the repository root: `python -m bench.bench_redis_cost`. Prints a table and writes
bench/results/redis_cost.json. Upstash may bill a script as one command or by what it runs;
both numbers are given.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
from starlette.types import ASGIApp, Receive, Scope, Send
from upstash_redis.asyncio import Redis

from storyq.queue import Dispatcher, scripts
from storyq_local.emulators.upstash import create_app
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.servers import serve_in_thread

TOKEN = "bench-upstash-token"
RESULTS = Path(__file__).parent / "results" / "redis_cost.json"
LOOKUPS = 200
LEASE = 300.0


def bench_id(name: str) -> uuid.UUID:
    """The fixed id of the bench's job or user called `name`: a UUID, as Postgres issues them
    (Redis holds its 36-character text)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"https://storyq.bench/ids/{name}")


JOB, WARM_UP, USER = bench_id("job-1"), bench_id("warm-up"), bench_id("u")


class CountingApp:
    """Counts the HTTP requests the emulator serves (one Upstash request each)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


class Meter:
    """Requests and Redis commands spent by one awaited step."""

    def __init__(self, counter: CountingApp, direct: redis.Redis) -> None:
        self.counter = counter
        self.direct = direct

    async def measure(self, step: Callable[[], Awaitable[object]]) -> dict[str, Any]:
        self.direct.config_resetstat()
        before = self.counter.requests
        await step()
        commands = _commands(self.direct)
        return {
            "requests": self.counter.requests - before,
            "commands": sum(commands.values()),
            "by_command": commands,
        }


def _commands(direct: redis.Redis) -> dict[str, int]:
    stats: dict[str, dict[str, int]] = direct.info("commandstats")
    counts = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    return {name: n for name, n in sorted(counts.items()) if not name.startswith("config")}


async def job_life(queue: Dispatcher, meter: Meter) -> dict[str, Any]:
    """One job's life, step by step, with every script already cached (the steady state)."""
    await _warm_up(queue)
    holder: list[int] = []

    async def claim() -> None:
        (claimed,) = await queue.claim(1, lease_seconds=LEASE)
        holder.append(claimed.fence)

    steps = {
        "enqueue": await meter.measure(lambda: queue.enqueue(JOB, user_id=USER, fence=2)),
        "claim": await meter.measure(claim),
        "heartbeat": await meter.measure(
            lambda: queue.heartbeat(JOB, holder[0], lease_seconds=LEASE)
        ),
        "ack": await meter.measure(lambda: queue.ack(JOB, holder[0], generation_seconds=270.0)),
    }
    total = {
        "requests": sum(step["requests"] for step in steps.values()),
        "commands": sum(step["commands"] for step in steps.values()),
    }
    idle = {
        "claim_with_nothing_waiting": await meter.measure(
            lambda: queue.claim(5, lease_seconds=LEASE)
        ),
        "sweep_reap_promote_claim": await meter.measure(lambda: _sweep(queue)),
    }
    return {"steps": steps, "total": total, "idle": idle}


async def _warm_up(queue: Dispatcher) -> None:
    await queue.rebuild([])  # a new (or flushed) queue takes claims once a sweep rebuilt it
    await queue.enqueue(WARM_UP, user_id=USER, fence=1)
    (claimed,) = await queue.claim(1, lease_seconds=LEASE)
    await queue.heartbeat(WARM_UP, claimed.fence, lease_seconds=LEASE)
    await queue.ack(WARM_UP, claimed.fence, generation_seconds=None)
    await _sweep(queue)


async def _sweep(queue: Dispatcher) -> None:
    """The sweep's Redis call with nothing pending or running in Postgres (the claim after it
    is skipped when nothing waits, as the worker does)."""
    report = await queue.sweep(
        pending=[], running=[], lease_seconds=LEASE, judge_after_seconds=LEASE
    )
    if report.waiting:
        await queue.claim(5, lease_seconds=LEASE)


def fill(direct: redis.Redis, queue: Dispatcher, depth: int) -> None:
    """`depth` waiting jobs (`bench_id(f"job-{n}")`, of fifty users), pipelined straight into
    Redis with the enqueue script, their ids as the dispatcher writes them."""
    direct.flushall()
    direct.script_load(scripts.ENQUEUE.source)
    k = queue.keys
    keys = [k.waiting, k.delayed, k.active, k.jobs, k.finish, k.fair, k.stats]
    for start in range(0, depth, 10_000):
        pipe = direct.pipeline(transaction=False)
        for n in range(start, min(start + 10_000, depth)):
            job, user, fence = str(bench_id(f"job-{n}")), str(bench_id(f"u{n % 50}")), n + 1
            pipe.evalsha(scripts.ENQUEUE.sha, len(keys), *keys, job, user, fence, 1.0)
        pipe.execute()


async def lookup_cost(queue: Dispatcher, direct: redis.Redis, depth: int) -> dict[str, Any]:
    fill(direct, queue, depth)
    target = bench_id(f"job-{depth - 1}")
    await queue.position(target)  # caches the script
    direct.config_resetstat()
    round_trips = []
    for _ in range(LOOKUPS):
        started = time.perf_counter()
        position = await queue.position(target)
        round_trips.append(time.perf_counter() - started)
    assert position is not None
    assert position.queue_length == depth
    stats: dict[str, dict[str, float]] = direct.info("commandstats")
    evalsha = stats["cmdstat_evalsha"]
    return {
        "depth": depth,
        "rank_of_target": position.position,
        "sdk_round_trip_median_ms": round(statistics.median(round_trips) * 1000, 3),
        "redis_usec_per_evalsha": evalsha["usec_per_call"],
        "commands_per_lookup": (
            sum(
                entry["calls"]
                for name, entry in stats.items()
                if not name.startswith("cmdstat_config")
            )
            / LOOKUPS
        ),
    }


async def measure(url: str, counter: CountingApp, direct: redis.Redis) -> dict[str, Any]:
    client = Redis(url=url, token=TOKEN, rest_retries=0, allow_telemetry=False)
    try:
        queue = Dispatcher(client, max_active=5)
        life = await job_life(queue, Meter(counter, direct))
        lookups = [await lookup_cost(queue, direct, depth) for depth in (10, 100_000)]
    finally:
        await client.close()
    return {"job_life": life, "position_lookup": lookups}


def report(results: dict[str, Any]) -> None:
    life = results["job_life"]
    print("One job's life (scripts cached)      requests  redis commands")
    for name, step in life["steps"].items():
        inner = ", ".join(f"{cmd} {n}" for cmd, n in step["by_command"].items())
        print(f"  {name:<34} {step['requests']:>8}  {step['commands']:>6}   ({inner})")
    total = life["total"]
    print(f"  {'total':<34} {total['requests']:>8}  {total['commands']:>6}")
    for name, step in life["idle"].items():
        print(f"  {name:<34} {step['requests']:>8}  {step['commands']:>6}")
    print("\nPosition lookup                 SDK round trip (median)  Redis per EVALSHA")
    for row in results["position_lookup"]:
        print(
            f"  depth {row['depth']:>7,}  rank {row['rank_of_target']:>6}"
            f"  {row['sdk_round_trip_median_ms']:>10.3f} ms"
            f"  {row['redis_usec_per_evalsha']:>12.2f} us"
            f"  ({row['commands_per_lookup']:.0f} commands)"
        )


def main() -> None:
    server = RedisProcess().start()
    counter = CountingApp(create_app(redis_url=server.url, token=TOKEN))
    emulator = serve_in_thread(counter)
    try:
        results = asyncio.run(measure(emulator.url, counter, server.client()))
    finally:
        emulator.stop()
        server.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    report(results)
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
