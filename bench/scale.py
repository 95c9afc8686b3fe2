"""`python -m bench.scale` (`make bench-scale`): does anything grow with the backlog?

Issue 18's scale part: with 100,000 jobs waiting and MAX_ACTIVE_JOBS = 500, enqueue p50 within
1.5x of an empty queue's, a sweep whose time and commands do not grow with the backlog, slot
refill <= 50 ms median, status lookups O(log n).

One private stack (bench/stack.py: a scratch database, a private redis-server, the emulators and
the API in processes pinned to the first CPU, counting requests; this process and the workers on
the others) with MAX_ACTIVE_JOBS = 500. Backlogs of 0, 1,000, 10,000 and 100,000 waiting jobs,
seeded in bulk (bench/scale_seed.py: the schema's own enqueue function, the Dispatcher's own
enqueue script); at each:
- the sweep: `storyq_worker.sweep.sweep` on a WorkerContext from `open_context`, as the worker
  builds it, timed (median of SWEEP_RUNS after a warm one) with its billed Redis commands
  (bench/billing.py's rule over INFO commandstats after CONFIG RESETSTAT) and PostgREST round
  trips; one more under MONITOR splits the commands by script;
- status lookups of a job at the back of the queue: GET /api/job/{id} through the API and
  `Dispatcher.position` through the Upstash emulator, LOOKUPS each;
- at 0 and 100,000: POST /api/generate, ENQUEUES one after another (the queue grows by that many
  during the samples).
Then slot refill at the full backlog (bench/scale_refill.py), at 500 slots and at fewer. Prints a
table (bench/scale_report.py), writes bench/results/scale.json and the `scale` key of
bench/results/bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import redis
from upstash_redis.asyncio import Redis

from bench.api_bench import GENERATE_BODY
from bench.billing import Trace, by_name, storyq_bill
from bench.load import Connection, Request, percentile_ms
from bench.scale_refill import run_workers
from bench.scale_report import figures, render
from bench.scale_seed import pending_count, seed_postgres, seed_redis
from bench.stack import JWT_SECRET, POWERTOOLS_ENV, SETTINGS, UPSTASH_TOKEN, ServerSide, bench_spec
from bench.users import BenchUser, cancel_pending, create_users
from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq.queue.keys import QueueKeys
from storyq_local.stack.builder import start_stack
from storyq_worker.context import open_context
from storyq_worker.sweep import sweep

RESULTS = Path(__file__).parent / "results"
BENCH_JSON = RESULTS / "bench.json"
SCALE_JSON = RESULTS / "scale.json"
POSTGRES_SERVER_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MAX_ACTIVE = 500
BACKLOGS = (0, 1_000, 10_000, 100_000)
USERS = 1_000
CREDITS = 1_000
SWEEP_RUNS = 5
LOOKUPS = 200
ENQUEUES = 200
# (MAX_ACTIVE_JOBS, worker processes, seconds): issue 18's setting, then smaller ones, at the
# same backlog, to tell what grows with the running attempts from what grows with the backlog.
REFILL_SETTINGS = ((MAX_ACTIVE, 4, 60.0), (50, 2, 30.0), (5, 1, 30.0))
GENERATION_SECONDS = 10.0
WARM_UP = 20


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def _timed_ms(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    found = await call()
    return (time.perf_counter() - started) * 1000, found


async def sweeps(side: ServerSide, settings: Settings, direct: redis.Redis) -> dict[str, Any]:
    """A warm sweep, SWEEP_RUNS timed and counted, one more under MONITOR."""
    runs: list[dict[str, Any]] = []
    async with open_context(settings) as ctx:
        await sweep(ctx)  # scripts cached, connections open
        for _ in range(SWEEP_RUNS):
            direct.config_resetstat()
            before = side.counts()["supabase"]
            ms, summary = await _timed_ms(lambda: sweep(ctx))
            bill = storyq_bill(direct)
            postgrest: Counter[str] = side.counts()["supabase"] - before
            runs.append(
                {
                    "ms": round(ms, 1),
                    "billed": bill.total,
                    "by_command": bill.by_command,
                    "postgrest": {p.removeprefix("/rest/v1/rpc/"): n for p, n in postgrest.items()},
                    "summary": summary.as_dict(),
                }
            )
        trace = Trace(direct).start()
        trace.mark("sweep")
        await sweep(ctx)
        trace.mark("swept")
        trace.stop()
    scripts = by_name(trace.calls("sweep", "swept"))
    return {
        "ms_p50": round(statistics.median(run["ms"] for run in runs), 1),
        "billed_p50": statistics.median(run["billed"] for run in runs),
        "runs": runs,
        "by_script": {
            name: {"calls": s["calls"], "billed": s["billed"]} for name, s in scripts.items()
        },
    }


async def lookups(api_url: str, upstash_url: str, user: BenchUser) -> dict[str, Any]:
    """A new job (at the back of the queue), then GET /api/job/{id} and Dispatcher.position."""
    conn = await Connection.open(api_url)
    client = Redis(url=upstash_url, token=UPSTASH_TOKEN, allow_telemetry=False)
    try:
        headers = {**user.authorization, "Content-Type": "application/json"}
        accepted = await conn.send(Request("POST", "/api/generate", headers, GENERATE_BODY))
        if accepted.status != 202:
            raise RuntimeError(f"POST /api/generate: {accepted.status} {accepted.body!r}")
        job_id = json.loads(accepted.body)["jobId"]
        lookup = Request("GET", f"/api/job/{job_id}", user.authorization)
        view = json.loads((await conn.send(lookup)).body)
        http: list[float] = []
        for _ in range(LOOKUPS):
            started = time.perf_counter()
            answer = await conn.send(lookup)
            http.append(time.perf_counter() - started)
            if answer.status != 200:
                raise RuntimeError(f"GET /api/job: {answer.status} {answer.body!r}")
        dispatcher = Dispatcher(client, max_active=MAX_ACTIVE)
        position: list[float] = []
        for _ in range(LOOKUPS):
            ms, found = await _timed_ms(lambda: dispatcher.position(UUID(job_id)))
            position.append(ms / 1000)
            if found is None:
                raise RuntimeError("Dispatcher.position: the probe job is not waiting")
    finally:
        await conn.close()
        await client.close()
    return {
        "rank": (view.get("waitTime") or {}).get("position"),
        "get_job_p50_ms": percentile_ms(http, 50),
        "get_job_p95_ms": percentile_ms(http, 95),
        "position_p50_ms": percentile_ms(position, 50),
        "position_p95_ms": percentile_ms(position, 95),
    }


async def enqueues(api_url: str, users: list[BenchUser]) -> dict[str, Any]:
    """POST /api/generate ENQUEUES times, one after another, the users taking turns."""
    conn = await Connection.open(api_url)
    latencies: list[float] = []
    try:
        for n in range(ENQUEUES):
            headers = {**users[n % len(users)].authorization, "Content-Type": "application/json"}
            started = time.perf_counter()
            answer = await conn.send(Request("POST", "/api/generate", headers, GENERATE_BODY))
            latencies.append(time.perf_counter() - started)
            if answer.status != 202 or json.loads(answer.body).get("estimatedWaitTime") is None:
                raise RuntimeError(f"POST /api/generate: {answer.status} {answer.body!r}")
    finally:
        await conn.close()
    return {
        "samples": ENQUEUES,
        "p50_ms": percentile_ms(latencies, 50),
        "p95_ms": percentile_ms(latencies, 95),
    }


async def warm_up(api_url: str, upstash_url: str, users: list[BenchUser]) -> None:
    """WARM_UP enqueues (the API's pools, caches and scripts), then the queue emptied again
    (Redis here, Postgres by the caller: the admin's empty)."""
    conn = await Connection.open(api_url)
    client = Redis(url=upstash_url, token=UPSTASH_TOKEN, allow_telemetry=False)
    try:
        for n in range(WARM_UP):
            headers = {**users[n].authorization, "Content-Type": "application/json"}
            await conn.send(Request("POST", "/api/generate", headers, GENERATE_BODY))
        await Dispatcher(client, max_active=MAX_ACTIVE).empty()
    finally:
        await conn.close()
        await client.close()


def snapshot_sql_ms(database_url: str) -> float:
    """`dispatch_snapshot()` (the rebuild's read) straight in SQL, median of three."""
    times = []
    with psycopg.connect(database_url) as conn:
        for _ in range(3):
            started = time.perf_counter()
            conn.execute("select public.dispatch_snapshot()").fetchone()
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


def measure(backlogs: tuple[int, ...], *, refill_window: float) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus, own_cpus = ({cpus[0]}, set(cpus[1:])) if len(cpus) > 1 else (None, None)
    log_dir = Path(tempfile.mkdtemp(prefix="storyq-bench-scale-"))  # kept: the output names it
    spec = dataclasses.replace(
        bench_spec(POSTGRES_SERVER_URL, cpus=server_cpus, log_dir=log_dir),
        settings={**SETTINGS, "max_active_jobs": MAX_ACTIVE},
    )
    side = ServerSide(start_stack(spec))
    try:
        if own_cpus:
            os.sched_setaffinity(0, own_cpus)
        return _on_the_stack(side, backlogs, refill_window=refill_window)
    finally:
        side.stop()


def _on_the_stack(
    side: ServerSide, backlogs: tuple[int, ...], *, refill_window: float
) -> dict[str, Any]:
    direct, settings, database_url = side.redis(), side.settings(), side.database_url
    users = create_users(database_url, USERS, credits=CREDITS, secret=JWT_SECRET)
    user_ids = [user.id for user in users]
    found: dict[str, Any] = {"log_dir": str(side.log_dir), "backlogs": {}}
    asyncio.run(warm_up(side.api_url, side.upstash_url, users))
    cancel_pending(database_url)
    for backlog in backlogs:
        missing = backlog - pending_count(database_url)
        started = time.perf_counter()
        if missing > 0:
            jobs = seed_postgres(database_url, settings, user_ids, missing)
            seed_redis(direct, jobs, max_active=MAX_ACTIVE)
        waiting = int(direct.zcard(QueueKeys("storyq").waiting))
        _say(f"backlog {backlog:,}: {waiting:,} waiting ({time.perf_counter() - started:.0f} s)")
        level: dict[str, Any] = {"waiting_in_redis": waiting}
        level["sweep"] = asyncio.run(sweeps(side, settings, direct))
        level["dispatch_snapshot_sql_ms"] = snapshot_sql_ms(database_url)
        level["lookup"] = asyncio.run(lookups(side.api_url, side.upstash_url, users[0]))
        if backlog in (0, max(backlogs)):
            level["enqueue"] = asyncio.run(enqueues(side.api_url, users))
        found["backlogs"][str(backlog)] = level
    found["slot_refill"] = {}
    for max_active, processes, seconds in REFILL_SETTINGS:
        window = min(seconds, refill_window)
        _say(
            f"slot refill: {processes} worker processes, MAX_ACTIVE_JOBS {max_active}, "
            f"{GENERATION_SECONDS:g} s generations, {window:g} s"
        )
        found["slot_refill"][str(max_active)] = run_workers(
            side.stack,
            processes=processes,
            max_active=max_active,
            generation_seconds=GENERATION_SECONDS,
            window_seconds=window,
        )
    return found


def write(measured: dict[str, Any], scale: dict[str, Any], machine: dict[str, Any]) -> None:
    when = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    SCALE_JSON.write_text(
        json.dumps({"when": when, "machine": machine, **measured, "scale": scale}, indent=2) + "\n",
        encoding="utf-8",
    )
    bench = json.loads(BENCH_JSON.read_text(encoding="utf-8")) if BENCH_JSON.exists() else {}
    bench["scale"] = {**scale, "when": when, "details": "bench/results/scale.json"}
    BENCH_JSON.write_text(json.dumps(bench, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="backlogs up to 10,000 and 20 s refills, to try the bench out: printed, not written",
    )
    args = parser.parse_args(argv)
    os.environ.update({**POWERTOOLS_ENV, "POWERTOOLS_LOG_LEVEL": "ERROR"})
    started = time.monotonic()
    machine: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    measured = measure(
        BACKLOGS[:3] if args.quick else BACKLOGS,
        refill_window=20.0 if args.quick else max(s for _, _, s in REFILL_SETTINGS),
    )
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["seconds"] = round(time.monotonic() - started)
    scale = figures(measured)
    print(render(scale))
    print(
        f"\n{machine['seconds']} s; load average {machine['load_average_at_start']} -> "
        f"{machine['load_average_at_end']}; logs in {measured['log_dir']}"
    )
    if args.quick:
        scratch = Path(tempfile.mkdtemp(prefix="storyq-bench-scale-quick-")) / "scale.json"
        scratch.write_text(json.dumps({**measured, "scale": scale}, indent=2), encoding="utf-8")
        print(f"--quick: nothing written to {RESULTS}; the figures are in {scratch}")
        return
    write(measured, scale, machine)
    print(f"written to {SCALE_JSON} and to {BENCH_JSON} under `scale`")


if __name__ == "__main__":
    main()
