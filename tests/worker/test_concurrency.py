"""The global limit: however many worker invocations run at once, never more than
MAX_ACTIVE_JOBS generations are in flight, and a freed slot is refilled at once."""

from __future__ import annotations

import asyncio
import json
import statistics
import uuid
from datetime import datetime
from pathlib import Path

import psycopg

from storyq.config import Settings
from storyq.generation import TemplateGenerator
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from storyq_worker.handler import invoke
from tests.support.lambda_context import worker_context
from tests.worker.generators import Counting
from tests.worker.helpers import enqueue

EVENTS = Path(__file__).resolve().parents[2] / "events"


def most_overlapping(intervals: list[tuple[datetime, datetime]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    events = [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    events.sort(key=lambda event: (event[0], event[1]))
    open_now = most = 0
    for _, step in events:
        open_now += step
        most = max(most, open_now)
    return most


def refill_latencies(intervals: list[tuple[datetime, datetime]], slots: int) -> list[float]:
    """For each start after the first `slots`: seconds since the latest finish before it."""
    starts = sorted(start for start, _ in intervals)[slots:]
    ends = sorted(end for _, end in intervals)
    latencies = []
    for start in starts:
        before = [end for end in ends if end <= start]
        if before:
            latencies.append((start - before[-1]).total_seconds())
    return latencies


async def test_ten_invocations_never_run_more_than_five_generations(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given 20 queued jobs and generations that take half a second
    jobs = [await enqueue(store, dispatcher, user, prompt=f"story {i}") for i in range(20)]
    generator = Counting(TemplateGenerator(delay_seconds=0.5))
    event = json.loads((EVENTS / "worker_kick.json").read_text())

    # When 10 worker invocations (each its own event loop and clients, as Lambdas) run at once
    summaries = await asyncio.gather(
        *(
            asyncio.to_thread(
                invoke,
                event,
                worker_context(),
                settings=worker_settings,
                generator=generator,
            )
            for _ in range(10)
        )
    )

    # Then every job completed once, and no more than 5 ever generated at the same time
    with psycopg.connect(worker_stack.database_url) as conn:
        rows = conn.execute(
            "select status, attempts, started_at, finished_at from public.story_jobs"
            " where id = any(%s)",
            (jobs,),
        ).fetchall()
    assert [(status, attempts) for status, attempts, _, _ in rows] == [("completed", 1)] * 20
    intervals = [(started, finished) for _, _, started, finished in rows]
    assert most_overlapping(intervals) == worker_settings.max_active_jobs
    assert generator.most_in_flight == worker_settings.max_active_jobs
    assert sum(summary["completed"] for summary in summaries) == 20
    # (a claim Postgres refused, when a lease lapsed under load and Redis briefly saw a free
    # slot, went back to the queue and was claimed again: every other claim ran)
    handed_back = sum(summary["deferred"] + summary["skipped"] for summary in summaries)
    assert sum(summary["claimed"] for summary in summaries) == 20 + handed_back

    # And a slot freed by a finished generation is taken again within a fraction of a second
    latencies = refill_latencies(intervals, worker_settings.max_active_jobs)
    print(
        f"\nslot refill latency over {len(latencies)} refills: "
        f"median {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    assert statistics.median(latencies) < 0.25
    assert await dispatcher.active_job_ids() == set()


def test_the_overlap_counter_counts_touching_intervals_as_sequential() -> None:
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(4)]
    assert most_overlapping([(t[0], t[1]), (t[1], t[2])]) == 1
    assert most_overlapping([(t[0], t[2]), (t[1], t[3])]) == 2
