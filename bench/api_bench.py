"""The API under load (uvicorn, in its own process): POST /api/generate beside a baseline, and
GET /api/job/{id} for a waiting job at queue depths 10 and 100,000.

Baseline: GET /api/me, the cheapest authenticated user route. It does what every user request
does (verify the JWT, the per-user read limit: one Upstash request) plus one PostgREST round
trip (`credit_balance`). POST /api/generate does the same kinds of work: the JWT, the generate
limit (one Upstash request), `enqueue_story_job` (one PostgREST round trip) and the Lua
enqueue (one Upstash request). The ratio of the two is what queueing adds to a request.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, cast

import redis
from upstash_redis.asyncio import Redis

from bench.load import (
    Connection,
    LoadResult,
    MakeRequest,
    Request,
    Response,
    percentile_ms,
    run_load,
)
from bench.stack import UPSTASH_TOKEN
from bench.users import BenchUser
from storyq.queue import Dispatcher, scripts

CONCURRENCY = (1, 50, 200)
# Requests per client at each concurrency: enough for a stable p99, little enough for 5 minutes.
PER_CLIENT = {1: 300, 50: 20, 200: 8}
LOOKUPS = 300
GENERATE_BODY = json.dumps(
    {
        "prompt": "A lighthouse keeper finds a door in the fog that was not there yesterday.",
        "genre": "mystery",
        "targetWords": 1200,
    }
).encode()


def _me(users: list[BenchUser]) -> MakeRequest:
    def make(client: int, _: int) -> Request:
        return Request("GET", "/api/me", users[client % len(users)].authorization)

    return make


def _generate(users: list[BenchUser]) -> MakeRequest:
    def make(client: int, _: int) -> Request:
        headers = {**users[client % len(users)].authorization, "Content-Type": "application/json"}
        return Request("POST", "/api/generate", headers, GENERATE_BODY)

    return make


async def warm_up(api_url: str, users: list[BenchUser]) -> None:
    """Every code path and connection pool warmed (scripts cached, pools filled)."""
    await run_load(api_url, _me(users), clients=20, per_client=5, expect=200)
    await run_load(api_url, _generate(users), clients=20, per_client=5, expect=202)


async def enqueue_latency(api_url: str, users: list[BenchUser]) -> dict[str, Any]:
    """Baseline then generate at each concurrency, in the same run on the same server."""
    rows: dict[str, Any] = {}
    for clients in CONCURRENCY:
        per_client = PER_CLIENT[clients]
        me = await run_load(api_url, _me(users), clients=clients, per_client=per_client, expect=200)
        generate = await run_load(
            api_url,
            _generate(users),
            clients=clients,
            per_client=per_client,
            expect=202,
            degraded=_without_position,
        )
        rows[str(clients)] = {
            "baseline_get_me": me.summary(),
            "post_generate": generate.summary(),
            "p50_ratio": _ratio(generate, me),
        }
    return rows


def _without_position(response: Response) -> bool:
    """A 202 whose Redis enqueue did not answer in time (the sweeper queues the job later)."""
    return json.loads(response.body).get("estimatedWaitTime") is None


def _ratio(generate: LoadResult, baseline: LoadResult) -> float | None:
    a, b = percentile_ms(generate.latencies, 50), percentile_ms(baseline.latencies, 50)
    return round(a / b, 2) if a is not None and b else None


class _Recorder:
    """Stands in for the Upstash client: records the EVALSHA calls a Dispatcher makes, so that
    they can be replayed through a redis-py pipeline (100,000 enqueues in a few seconds)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], list[str]]] = []

    async def evalsha(self, sha: str, keys: list[str], args: list[str]) -> None:
        self.calls.append((sha, keys, args))


async def fill_behind(direct: redis.Redis, count: int, *, user_id: uuid.UUID) -> None:
    """An empty queue, then `count` Redis-only jobs of `user_id` queued with the enqueue script
    exactly as Dispatcher.enqueue calls it; that user's next job waits behind all of them."""
    recorder = _Recorder()
    queue = Dispatcher(cast(Redis, recorder), max_active=5)
    for n in range(count):
        await queue.enqueue(uuid.uuid4(), user_id=user_id, fence=n + 1)
    direct.flushall()
    direct.script_load(scripts.ENQUEUE.source)
    for start in range(0, count, 10_000):
        pipe = direct.pipeline(transaction=False)
        for sha, keys, args in recorder.calls[start : start + 10_000]:
            pipe.evalsha(sha, len(keys), *keys, *args)
        pipe.execute()


async def status_lookups(
    api_url: str, upstash_url: str, direct: redis.Redis, user: BenchUser
) -> dict[str, Any]:
    """GET /api/job/{id} of one real (Postgres) job waiting among depth - 1 Redis-only ones
    (queued straight into Redis with the enqueue script, as bench_redis_cost fills it)."""
    client = Redis(url=upstash_url, token=UPSTASH_TOKEN, allow_telemetry=False)
    try:
        return await _lookups(api_url, direct, Dispatcher(client, max_active=5), user)
    finally:
        await client.close()


async def _lookups(
    api_url: str, direct: redis.Redis, dispatcher: Dispatcher, user: BenchUser
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for depth in (10, 100_000):
        # Redis flushed (rate-limit windows too), then depth - 1 jobs of the same user, so
        # that the real job waits last, at rank depth - 1.
        await fill_behind(direct, depth - 1, user_id=user.id)
        conn = await Connection.open(api_url)
        try:
            headers = {**user.authorization, "Content-Type": "application/json"}
            accepted = await conn.send(Request("POST", "/api/generate", headers, GENERATE_BODY))
            if accepted.status != 202:
                raise RuntimeError(f"POST /api/generate: {accepted.status} {accepted.body!r}")
            job_id = json.loads(accepted.body)["jobId"]
            lookup = Request("GET", f"/api/job/{job_id}", user.authorization)
            first = await conn.send(lookup)
            view = json.loads(first.body)
            wait = view.get("waitTime") or {}
            latencies: list[float] = []
            for _ in range(LOOKUPS):
                latencies.append(await _timed(conn, lookup))
        finally:
            await conn.close()
        results[str(depth)] = {
            "depth": depth,
            "status": view.get("status"),
            "position": wait.get("position"),
            "queue_length": direct.zcard(dispatcher.keys.waiting),
            "lookups": LOOKUPS,
            "p50_ms": percentile_ms(latencies, 50),
            "p95_ms": percentile_ms(latencies, 95),
            "p99_ms": percentile_ms(latencies, 99),
        }
    shallow, deep = results["10"]["p50_ms"], results["100000"]["p50_ms"]
    results["p50_ratio"] = round(deep / shallow, 3) if shallow and deep else None
    return results


async def _timed(conn: Connection, request: Request) -> float:
    started = time.perf_counter()
    response = await conn.send(request)
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"{request.path}: {response.status} {response.body!r}")
    return elapsed
