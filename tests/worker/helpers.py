"""Helpers of the worker tests: enqueue as the API does, read rows, poll with a deadline."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from storyq.config import Settings
from storyq.generation import Generator
from storyq.queue import Dispatcher
from storyq.store import EnqueueRequest, StartedJob, Store
from storyq_worker.invocation import run_invocation
from storyq_worker.summary import Summary

TERMINAL = ("completed", "failed", "cancelled")


# The worker tests' private stack (their sweeps must not meet other modules' jobs).


async def enqueue(
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    *,
    prompt: str = "a lighthouse keeper who collects storms",
    target_words: int = 300,
    language: str = "en",
    max_attempts: int = 3,
) -> uuid.UUID:
    """What POST /api/generate does: debit + story + job in Postgres, then queue in Redis
    with the user's plan's weight, running cap and priority."""
    job = await store.jobs.enqueue(
        EnqueueRequest(
            user_id=user,
            prompt=prompt,
            target_words=target_words,
            language=language,
            cost=1,
            max_attempts=max_attempts,
        )
    )
    assert job.fence is not None
    await dispatcher.enqueue(
        job.job_id,
        user_id=user,
        fence=job.fence,
        weight=job.weight,
        max_active_per_user=job.max_active_per_user,
        priority=job.priority,
    )
    return job.job_id


async def start(store: Store, settings: Settings, job_id: uuid.UUID, fence: int) -> StartedJob:
    """What a worker does with its claim: start the attempt in Postgres (it must start)."""
    started = await store.jobs.start(
        job_id, fence, max_active=settings.max_active_jobs, live_seconds=settings.lease_seconds
    )
    assert isinstance(started, StartedJob), started
    return started


def job_row(database_url: str, job_id: uuid.UUID) -> dict[str, Any]:
    """The job row joined with its story (content, words, story status)."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        row = conn.execute(
            "select j.*, s.content, s.words, s.title, s.status as story_status"
            " from public.story_jobs j join public.stories s on s.id = j.story_id"
            " where j.id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None, f"no job {job_id}"
    return row


def ledger(database_url: str, job_id: uuid.UUID) -> dict[str, int]:
    """How many ledger entries of each kind the job has."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select kind, count(*) from public.credit_ledger where job_id = %s group by kind",
            (job_id,),
        ).fetchall()
    return {str(kind): int(count) for kind, count in rows}


def status_of(database_url: str, job_id: uuid.UUID) -> str:
    return str(job_row(database_url, job_id)["status"])


async def drive(
    settings: Settings,
    done: Callable[[], bool],
    *,
    generator: Generator | None = None,
    timeout: float = 20.0,
) -> Summary:
    """Run worker invocations (sweep + drain) until `done()`, as the schedule would."""
    total = Summary()
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker did not get there within {timeout} s: {total}")
        total.merge(await run_invocation(settings, generator=generator))
        await asyncio.sleep(0.05)
    return total


def all_terminal(database_url: str, job_ids: list[uuid.UUID]) -> Callable[[], bool]:
    return lambda: all(status_of(database_url, job_id) in TERMINAL for job_id in job_ids)
