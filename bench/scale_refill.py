"""Slot refill for bench/scale.py: real worker processes (`python -m storyq_worker.runner`, as
the reliability suite starts them) sharing MAX_ACTIVE_JOBS slots, the template generator with
a short GENERATION_DELAY_SECONDS, drawing on the backlog that is already waiting.

The measure, from the job rows alone (Postgres's clock): with the cap full, a start needs a slot
that a finish freed. Sorted, the k-th start after the first `cap` took the slot of the
(k - cap)-th finish, so refill_k = started_at[k] - finished_at[k - cap] (finishes of jobs that
completed; `story_jobs.finished_at`, the moment `complete_story_job` committed). That pairing
means something only while the cap is full, so the figures come with the concurrency the
workers reached: a negative refill is a start that did not wait for a slot (the cap was not
full), and refills are counted only once `cap` attempts had started.
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import datetime
from typing import Any

import psycopg

from storyq_local.stack.builder import LocalStack
from storyq_local.stack.workers import WorkerProcess


def _now(database_url: str) -> datetime:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select clock_timestamp()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def run_workers(
    stack: LocalStack,
    *,
    processes: int,
    max_active: int,
    generation_seconds: float,
    window_seconds: float,
) -> dict[str, Any]:
    """`processes` workers for `window_seconds`, then SIGTERM (running jobs handed back)."""
    env = stack.env(
        max_active_jobs=max_active,
        generator="template",
        generation_delay_seconds=generation_seconds,
    )
    per_process = math.ceil(max_active / processes)
    began = _now(stack.database_url)
    workers = [
        WorkerProcess(env=env, log_dir=stack.log_dir, concurrency=per_process).start()
        for _ in range(processes)
    ]
    try:
        time.sleep(window_seconds)
        ended = _now(stack.database_url)
    finally:
        for worker in workers:
            worker.stop()
    figures = refill_figures(stack.database_url, began, ended, cap=max_active)
    return {
        "processes": processes,
        "concurrency_per_process": per_process,
        "max_active_jobs": max_active,
        "generation_delay_seconds": generation_seconds,
        "window_seconds": window_seconds,
        "worker_logs": [str(worker.log) for worker in workers],
        **figures,
    }


def refill_figures(
    database_url: str, began: datetime, ended: datetime, *, cap: int
) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select started_at, finished_at, status from public.story_jobs"
            " where started_at >= %s and started_at < %s",
            (began, ended),
        ).fetchall()
    starts = sorted(row[0] for row in rows)
    finishes = sorted(row[1] for row in rows if row[2] == "completed" and row[1] < ended)
    gaps = [
        (starts[k] - finishes[k - cap]).total_seconds()
        for k in range(cap, len(starts))
        if k - cap < len(finishes)
    ]
    waited = [gap for gap in gaps if gap >= 0]
    peak = _peak_running(rows, ended)
    seconds = (ended - began).total_seconds()
    return {
        "started": len(starts),
        "completed": len(finishes),
        "completed_per_second": round(len(finishes) / seconds, 1) if seconds else None,
        "peak_running": peak,
        "cap_reached": peak >= cap,
        "refills": len(gaps),
        "refills_that_waited_for_a_slot": len(waited),
        "refill_p50_ms": _ms(statistics.median(gaps)) if gaps else None,
        "refill_p90_ms": _ms(statistics.quantiles(gaps, n=10)[-1]) if len(gaps) > 1 else None,
        "refill_max_ms": _ms(max(gaps)) if gaps else None,
        "first_start_after_s": round((starts[0] - began).total_seconds(), 2) if starts else None,
        "cap_first_full_after_s": (
            round((starts[cap - 1] - began).total_seconds(), 2) if len(starts) >= cap else None
        ),
    }


def _peak_running(rows: list[tuple[Any, ...]], ended: datetime) -> int:
    """Most attempts running at once (start +1, finish -1; unfinished ones run to `ended`)."""
    events = []
    for started, finished, _ in rows:
        events.append((started, 1))
        events.append((finished if finished is not None and finished < ended else ended, -1))
    running = peak = 0
    for _, step in sorted(events, key=lambda event: (event[0], event[1])):
        running += step
        peak = max(peak, running)
    return peak


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
