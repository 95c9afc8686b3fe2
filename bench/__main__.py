"""`python -m bench` (what `make bench` runs): every benchmark in one go, one table, JSON results.

Order: cold start and the queue's own Redis cost first (nothing else of ours running), then
the private stack (redis-server, a scratch database on the PostgreSQL server of the tests, the
emulators and the API in processes of their own, pinned to the first CPU; this process, the
load generator and the worker, on the others), then the API, the costs per job and the worker.
Writes bench/results/bench.json (everything, and the table's rows) and, through
bench_redis_cost, bench/results/redis_cost.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.stack import JWT_SECRET, POWERTOOLS_ENV, start_server_side

RESULTS = Path(__file__).parent / "results" / "bench.json"
KEPT_FROM_OTHER_BENCHES = ("cost", "scale", "stream")
POSTGRES_SERVER_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
USERS = 200
CREDITS = 1_000_000


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def redis_cost() -> dict[str, Any]:
    """bench_redis_cost as its own main() runs it (private redis-server, emulator), without its
    separate report: its numbers go into the one table."""
    from bench import bench_redis_cost
    from storyq_local.emulators.upstash import create_app
    from storyq_local.stack.redis_server import RedisProcess
    from storyq_local.stack.servers import serve_in_thread

    server = RedisProcess().start()
    counter = bench_redis_cost.CountingApp(
        create_app(redis_url=server.url, token=bench_redis_cost.TOKEN)
    )
    emulator = serve_in_thread(counter)
    try:
        results = asyncio.run(bench_redis_cost.measure(emulator.url, counter, server.client()))
    finally:
        emulator.stop()
        server.stop()
    bench_redis_cost.RESULTS.parent.mkdir(parents=True, exist_ok=True)
    bench_redis_cost.RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def _cpu_split() -> tuple[set[int] | None, set[int] | None]:
    """(server side, load generator): the first CPU and the rest, when there are two or more."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _stage(results: dict[str, Any], key: str, title: str, run: Callable[[], Any]) -> None:
    """One benchmark; a failure is recorded (and printed) and the others still run."""
    _say(title)
    try:
        results[key] = run()
    except Exception as exc:  # a broken benchmark must not take the whole table with it
        traceback.print_exc()
        results[key] = {"error": f"{type(exc).__name__}: {exc}"}


def on_the_stack(results: dict[str, Any]) -> None:
    """Everything that needs the API: a private stack, stopped and dropped afterwards."""
    from bench import api_bench, worker_bench
    from bench.users import create_users

    server_cpus, client_cpus = _cpu_split()
    results["cpus"] = {
        "server_side": sorted(server_cpus or []),
        "load_generator_and_worker": sorted(client_cpus or []),
    }
    with contextlib.ExitStack() as cleanup:
        side = start_server_side(POSTGRES_SERVER_URL, cpus=server_cpus)
        cleanup.callback(side.stop)
        results["server_log"] = str(side.log_dir)
        if client_cpus:
            cleanup.callback(os.sched_setaffinity, 0, os.sched_getaffinity(0))
            os.sched_setaffinity(0, client_cpus)
        direct = side.redis()
        database_url = side.database_url
        users = create_users(database_url, USERS, credits=CREDITS, secret=JWT_SECRET)
        _say(f"stack up (API {side.api_url}); {USERS} users; warming up")
        asyncio.run(api_bench.warm_up(side.api_url, users))
        settings = side.settings()
        stages: list[tuple[str, str, Callable[[], Any]]] = [
            (
                "enqueue",
                "enqueue latency at 1, 50, 200 clients",
                lambda: asyncio.run(api_bench.enqueue_latency(side.api_url, users)),
            ),
            (
                "status_lookup",
                "status lookups at depth 10 and 100,000",
                lambda: asyncio.run(
                    api_bench.status_lookups(side.api_url, side.upstash_url, direct, users[0])
                ),
            ),
            (
                "job_life",
                "cost per job's life and per idle hour",
                lambda: worker_bench.job_life(side, direct, settings, users[1], database_url),
            ),
            (
                "worker_overhead",
                "worker overhead",
                lambda: worker_bench.worker_overhead(side, settings, users[2], database_url),
            ),
            (
                "slot_refill",
                "slot refill",
                lambda: worker_bench.slot_refill(side, settings, users[3], database_url),
            ),
        ]
        for key, title, run in stages:
            _stage(results, key, title, run)


def main() -> None:
    # The worker runs in this process: its expected warnings (a flushed Redis is rebuilt) would
    # interleave with the table. The server processes log at WARNING to their log file.
    os.environ.update({**POWERTOOLS_ENV, "POWERTOOLS_LOG_LEVEL": "ERROR"})
    from bench import cold_start
    from bench.report import build_rows, render

    started = time.monotonic()
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
    }
    _stage(results, "cold_start", "cold start (fresh interpreters)", cold_start.measure)
    _stage(results, "redis_cost", "queue cost (bench_redis_cost)", redis_cost)
    try:
        on_the_stack(results)
    except Exception as exc:  # the stack did not come up: the table says so
        traceback.print_exc()
        results["stack_error"] = f"{type(exc).__name__}: {exc}"
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.monotonic() - started, 1)
    rows = build_rows(results)
    results["table"] = [row.as_dict() for row in rows]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    # What other benches write into bench.json (`make bench-cost`: `cost`, `make bench-scale`:
    # `scale`, `make bench-stream`: `stream`) stays.
    if RESULTS.is_file():
        earlier = json.loads(RESULTS.read_text(encoding="utf-8"))
        for key in KEPT_FROM_OTHER_BENCHES:
            if key in earlier and key not in results:
                results[key] = earlier[key]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(render(rows))
    missed = [row for row in rows if row.met is False]
    failed = [key for key, value in results.items() if isinstance(value, dict) and "error" in value]
    print(
        f"\n{len(rows)} measures, {sum(r.met is True for r in rows)} targets met, "
        f"{len(missed)} missed; {results['seconds']:.0f} s; load average "
        f"{results['machine']['load_average_at_start']} -> "
        f"{results['machine']['load_average_at_end']}; written to {RESULTS} "
        f"(server output: {results.get('server_log')})"
    )
    if failed or "stack_error" in results:
        raise SystemExit(f"benchmarks that failed: {', '.join(failed) or 'the stack'}")


if __name__ == "__main__":
    main()
