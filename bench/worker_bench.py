"""What a job costs from enqueue to ack, and how fast the worker turns slots over.

- Per job's life, end to end through the API (uvicorn) and the worker's invocation code
  (`storyq_worker.handler.invoke`, as the Lambda runs it): Upstash HTTP requests and PostgREST
  round trips counted at the emulators, Redis commands from INFO commandstats (the commands run
  inside scripts included). The invocation's fixed part (sweep, empty claim) is measured alone
  on an idle queue and taken out, and, times 60, is the cost of an idle hour of the schedule.
- Worker overhead per job around a zero-delay generator: each step timed (claim, start,
  complete, ack) and the real drain loop, one job at a time and five at once.
- Slot refill: a job's `finished_at` to the `started_at` of the job that took its slot, from the
  job rows, with five slots and a generator that takes 0.25 s.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from typing import Any
from uuid import UUID

import psycopg
import redis

from bench.load import Connection, Request
from bench.stack import ServerSide
from bench.users import BenchUser, cancel_pending
from storyq.clients import async_postgrest, async_redis
from storyq.config import Settings
from storyq.generation import GenerationRequest, GenerationResult, ProgressCallback
from storyq.queue import Dispatcher
from storyq.store import StartedJob, Store
from storyq_worker.handler import invoke
from storyq_worker.invocation import run_invocation

LIFE_JOBS = 20
OVERHEAD_JOBS = 30
DRAIN_RUNS = 3  # median of: the machine may be busy with other work
REFILL_JOBS = 20
REFILL_GENERATION_SECONDS = 0.25
BODY = json.dumps({"prompt": "A clockmaker's last commission.", "targetWords": 300}).encode()
SCHEDULE_PER_HOUR = 60  # EventBridge rate(1 minute)


class NullGenerator:
    """Writes a fixed story after `delay_seconds` (0: the worker's own overhead only)."""

    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.delay_seconds = delay_seconds

    @property
    def name(self) -> str:
        return "null"

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        words = request.target_words
        content = " ".join(["word"] * words)
        on_progress(content)
        return GenerationResult(
            title=request.title or "Bench",
            content=content,
            words=words,
            target_words=request.target_words,
            finish_reason="stop",
            generator="null",
        )


async def enqueue_jobs(api_url: str, user: BenchUser, count: int) -> list[str]:
    """`count` jobs through POST /api/generate, one after another; their ids."""
    conn = await Connection.open(api_url)
    headers = {**user.authorization, "Content-Type": "application/json"}
    ids = []
    try:
        for _ in range(count):
            answer = await conn.send(Request("POST", "/api/generate", headers, BODY))
            if answer.status != 202:
                raise RuntimeError(f"POST /api/generate: {answer.status} {answer.body!r}")
            ids.append(json.loads(answer.body)["jobId"])
    finally:
        await conn.close()
    return ids


class Meter:
    """Upstash requests, PostgREST round trips (by function) and Redis commands between marks."""

    def __init__(self, side: ServerSide, direct: redis.Redis) -> None:
        self.side = side
        self.direct = direct
        self._mark: dict[str, Counter[str]] = {}

    def start(self) -> None:
        self.direct.config_resetstat()
        self._mark = self.side.counts()

    def read(self) -> dict[str, Any]:
        now = self.side.counts()
        upstash = now["upstash"] - self._mark["upstash"]
        supabase = now["supabase"] - self._mark["supabase"]
        commands = _commands(self.direct)
        return {
            "upstash_requests": upstash.total(),
            "redis_commands": sum(commands.values()),
            "redis_by_command": commands,
            "postgrest_round_trips": supabase.total(),
            "postgrest_by_path": {
                path.removeprefix("/rest/v1/rpc/"): n for path, n in sorted(supabase.items())
            },
        }


def _commands(direct: redis.Redis) -> dict[str, int]:
    stats: dict[str, dict[str, int]] = direct.info("commandstats")
    counts = {name.removeprefix("cmdstat_"): entry["calls"] for name, entry in stats.items()}
    ignored = ("config", "info")  # the bench's own CONFIG RESETSTAT and INFO
    return {n: c for n, c in sorted(counts.items()) if not n.startswith(ignored)}


def _per_job(total: dict[str, Any], idle: dict[str, Any] | None, jobs: int) -> dict[str, float]:
    keys = ("upstash_requests", "redis_commands", "postgrest_round_trips")
    return {key: round((total[key] - (idle[key] if idle else 0)) / jobs, 2) for key in keys}


def job_life(
    side: ServerSide,
    direct: redis.Redis,
    settings: Settings,
    user: BenchUser,
    database_url: str,
) -> dict[str, Any]:
    """LIFE_JOBS jobs through the API, then one worker invocation that runs them all."""
    cancel_pending(database_url)
    direct.flushall()
    meter = Meter(side, direct)
    invoke({}, None, settings=settings, generator=NullGenerator())  # warm: scripts cached

    meter.start()
    invoke({}, None, settings=settings, generator=NullGenerator())
    idle = meter.read()

    meter.start()
    asyncio.run(enqueue_jobs(side.api_url, user, LIFE_JOBS))
    api = meter.read()

    meter.start()
    summary = invoke({}, None, settings=settings, generator=NullGenerator())
    worker = meter.read()
    if summary.get("completed") != LIFE_JOBS:
        raise RuntimeError(f"the worker did not complete every job: {summary}")

    api_per_job = _per_job(api, None, LIFE_JOBS)
    worker_per_job = _per_job(worker, idle, LIFE_JOBS)
    life = {key: round(api_per_job[key] + worker_per_job[key], 2) for key in api_per_job}
    return {
        "jobs": LIFE_JOBS,
        "api_enqueue": api,
        "worker_invocation": worker,
        "idle_invocation": idle,
        "per_job": {"api": api_per_job, "worker": worker_per_job, "life": life},
        "idle_hour": {
            key: idle[key] * SCHEDULE_PER_HOUR
            for key in ("upstash_requests", "redis_commands", "postgrest_round_trips")
        },
    }


async def step_breakdown(settings: Settings, count: int) -> dict[str, Any]:
    """claim -> start -> (zero-delay generation) -> complete -> ack, one job at a time, each
    step timed; the same calls, in the same order, that `storyq_worker.attempt` makes."""
    client, db = async_redis(settings), async_postgrest(settings)
    try:
        steps = await _steps(
            Store(db), Dispatcher(client, max_active=settings.max_active_jobs), settings, count
        )
    finally:
        await client.close()
        await db.aclose()
    medians = {name: round(statistics.median(v) * 1000, 2) for name, v in steps.items()}
    return {
        "jobs": count,
        "median_ms": medians,
        "sum_of_medians_ms": round(sum(medians.values()), 2),
    }


async def _steps(
    store: Store, queue: Dispatcher, settings: Settings, count: int
) -> dict[str, list[float]]:
    generator = NullGenerator()
    steps: dict[str, list[float]] = {"claim": [], "start": [], "complete": [], "ack": []}
    clock = time.perf_counter
    for _ in range(count):
        t0 = clock()
        (claim,) = await queue.claim(1, lease_seconds=settings.lease_seconds)
        t1 = clock()
        job = await store.jobs.start(
            claim.job_id,
            claim.fence,
            max_active=settings.max_active_jobs,
            live_seconds=settings.lease_seconds,
        )
        t2 = clock()
        if not isinstance(job, StartedJob):
            raise RuntimeError(f"the bench's own claim was refused: {job!r}")
        request = GenerationRequest(
            job_id=str(job.job_id), prompt=job.prompt, target_words=job.target_words
        )
        result = await generator.generate(request, lambda _: None)
        t3 = clock()
        await store.jobs.complete(
            claim.job_id,
            fence=claim.fence,
            content=result.content,
            title=result.title,
            result=result.summary(generation_seconds=0.0),
        )
        t4 = clock()
        await queue.ack(claim.job_id, claim.fence, generation_seconds=0.0)
        t5 = clock()
        for name, seconds in zip(steps, (t1 - t0, t2 - t1, t4 - t3, t5 - t4), strict=True):
            steps[name].append(seconds)
    return steps


def worker_overhead(
    side: ServerSide, settings: Settings, user: BenchUser, database_url: str
) -> dict[str, Any]:
    """Per-step medians, then the real drain (the Lambda's invocation) at 1 and 5 slots."""
    cancel_pending(database_url)
    asyncio.run(enqueue_jobs(side.api_url, user, OVERHEAD_JOBS))
    breakdown = asyncio.run(step_breakdown(settings, OVERHEAD_JOBS))

    idle_seconds = statistics.median(_invocation_seconds(settings, 1) for _ in range(3))
    drains = {}
    for slots in (1, 5):
        runs = []
        for _ in range(DRAIN_RUNS):
            asyncio.run(enqueue_jobs(side.api_url, user, OVERHEAD_JOBS))
            runs.append(_invocation_seconds(settings, slots, expect=OVERHEAD_JOBS))
        seconds = statistics.median(runs)
        drains[str(slots)] = {
            "jobs": OVERHEAD_JOBS,
            "runs_seconds": [round(r, 3) for r in runs],
            "invocation_seconds": round(seconds, 3),
            "per_job_ms": round((seconds - idle_seconds) / OVERHEAD_JOBS * 1000, 2),
            "jobs_per_second": round(OVERHEAD_JOBS / (seconds - idle_seconds), 1),
        }
    return {
        "steps": breakdown,
        "idle_invocation_ms": round(idle_seconds * 1000, 1),
        "drain": drains,
    }


def _invocation_seconds(settings: Settings, slots: int, *, expect: int = 0) -> float:
    started = time.perf_counter()
    summary = asyncio.run(
        run_invocation(settings, generator=NullGenerator(), concurrency=slots)
    ).as_dict()
    seconds = time.perf_counter() - started
    if summary.get("completed", 0) != expect:
        raise RuntimeError(f"expected {expect} completed jobs: {summary}")
    return seconds


def slot_refill(
    side: ServerSide, settings: Settings, user: BenchUser, database_url: str
) -> dict[str, Any]:
    """Five slots, REFILL_JOBS jobs of REFILL_GENERATION_SECONDS each; from the job rows."""
    cancel_pending(database_url)
    ids = asyncio.run(enqueue_jobs(side.api_url, user, REFILL_JOBS))
    summary = invoke(
        {}, None, settings=settings, generator=NullGenerator(REFILL_GENERATION_SECONDS)
    )
    if summary.get("completed") != REFILL_JOBS:
        raise RuntimeError(f"the worker did not complete every job: {summary}")
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select started_at, finished_at from public.story_jobs where id = any(%s)",
            ([UUID(i) for i in ids],),
        ).fetchall()
    starts = sorted(row[0] for row in rows)
    finishes = sorted(row[1] for row in rows)
    slots = settings.max_active_jobs
    # The k-th start beyond the first `slots` needed a slot: the (k - slots)-th finish freed it.
    gaps = [(starts[k] - finishes[k - slots]).total_seconds() for k in range(slots, len(starts))]
    return {
        "jobs": REFILL_JOBS,
        "slots": slots,
        "generation_seconds": REFILL_GENERATION_SECONDS,
        "refills": len(gaps),
        "median_ms": round(statistics.median(gaps) * 1000, 2),
        "max_ms": round(max(gaps) * 1000, 2),
    }
