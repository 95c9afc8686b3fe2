"""Provider back-pressure shared by every worker, end to end: real worker invocations (each with
its own clients, as separate Lambda invocations have) against the OpenAI emulator answering 429
for a while, the scratch Postgres and a private Redis.

A 429 pauses claims for every worker for as long as the provider asked; the refused attempts
go back without being spent; the pause ends with one probe, and then every job runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.emulators.openai import Recorded, create_app
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.servers import ThreadedServer, serve_in_thread
from storyq_worker.invocation import run_invocation
from storyq_worker.summary import Summary
from tests.worker.helpers import all_terminal, enqueue, job_row

LIMITED_SECONDS = 3.0
JOBS = 6


@dataclass
class Provider:
    """The OpenAI emulator on a thread, and what it saw."""

    server: ThreadedServer
    recorded: Recorded


def serve_provider(*, story_seconds: float = 0.0) -> Iterator[Provider]:
    app = create_app(api_key="test-key", story_seconds=story_seconds)
    server = serve_in_thread(app)
    yield Provider(server, app.state.recorded)
    server.stop()


@pytest.fixture
def provider() -> Iterator[Provider]:
    """An emulator of its own: `rate-limited-for:S` counts from its first request."""
    yield from serve_provider()


@pytest.fixture
def slow_provider() -> Iterator[Provider]:
    """The same, writing each story over 4 s."""
    yield from serve_provider(story_seconds=4.0)


def openai_settings(settings: Settings, server: ThreadedServer, model: str) -> Settings:
    return settings.model_copy(
        update={
            "generator": "openai",
            "openai_base_url": f"{server.url}/v1",
            "openai_api_key": SecretStr("test-key"),
            "openai_model": model,
            "max_active_jobs": 5,
            # the production lease: on a busy machine no attempt stops itself for a slow
            # heartbeat (and goes back to the queue), which would blur what is counted here
            "lease_seconds": 60.0,
        }
    )


async def test_a_rate_limit_pauses_every_worker_and_spends_no_attempt(
    worker_stack: LocalStack,
    worker_settings: Settings,
    provider: Provider,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given six jobs and a provider that answers 429 for 3 s from its first request
    model = f"rate-limited-for:{LIMITED_SECONDS:g}"
    settings = openai_settings(worker_settings, provider.server, model)
    jobs = [await enqueue(store, dispatcher, user, target_words=120) for _ in range(JOBS)]

    # When three worker invocations of two slots each take them on at once
    summaries: list[Summary] = await asyncio.gather(
        *(run_invocation(settings, concurrency=2) for _ in range(3))
    )

    # Then every job completed on its first attempt: the refused ones were given back unspent
    assert all_terminal(worker_stack.database_url, jobs)()
    for job_id in jobs:
        row = job_row(worker_stack.database_url, job_id)
        assert (row["status"], row["attempts"], row["refunded"]) == ("completed", 1, False)
    assert sum(summary.paused for summary in summaries) >= 1
    assert sum(summary.failed + summary.retried for summary in summaries) == 0

    # And the provider was asked nothing while it was limited, beyond the requests of the
    # attempts leased before the first 429 came back (at most the global cap)
    seen = provider.recorded
    log = [(at, status) for at, name, status in seen.log if name == model]
    refused = [at for at, status in log if status == 429]
    answered = [at for at, status in log if status == 200]
    assert 1 <= len(refused) <= settings.max_active_jobs
    window_end = seen.first_seen[model] + LIMITED_SECONDS
    assert all(at >= window_end for at in answered)
    assert len(answered) == JOBS
    # and the pause is over
    assert await dispatcher.provider_pause() is None


async def test_a_refused_probe_renews_the_pause_until_the_provider_answers(
    worker_stack: LocalStack,
    worker_settings: Settings,
    provider: Provider,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a pause that ended a moment ago (its Retry-After was shorter than the limit), and a
    # provider still limited for 2 s more
    model = "rate-limited-for:2"
    settings = openai_settings(worker_settings, provider.server, model)
    job_id = await enqueue(store, dispatcher, user, target_words=80)
    await dispatcher.pause(0.05, reason="rate_limited")
    await asyncio.sleep(0.1)

    # When a worker runs, its one claim is a probe; the provider refuses it, so the pause is
    # renewed for what the provider asks (ceil of the 2 s left), and the job is not spent
    summary = await run_invocation(settings, concurrency=5)

    # Then the worker waited the renewed pause out and the job ran on its first attempt
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"]) == ("completed", 1)
    assert summary.paused == 1
    seen = provider.recorded
    assert [status for _, name, status in seen.log if name == model] == [429, 200]
    assert await dispatcher.provider_pause() is None


async def test_once_the_probe_is_answered_the_other_slots_fill_at_once(
    worker_stack: LocalStack,
    worker_settings: Settings,
    slow_provider: Provider,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given three jobs, a pause that has just ended, and stories that take 4 s to write
    settings = openai_settings(worker_settings, slow_provider.server, "story")
    jobs = [await enqueue(store, dispatcher, user, target_words=80) for _ in range(3)]
    await dispatcher.pause(0.05, reason="rate_limited")
    await asyncio.sleep(0.1)

    # When one worker invocation runs: its first claim is the probe, answered at once
    summary = await run_invocation(settings, concurrency=5)

    # Then the other two started while the probe's story was still being written (a second
    # after the probe, not when it ended), and all three completed on their first attempt
    rows = sorted(
        (job_row(worker_stack.database_url, job_id) for job_id in jobs),
        key=lambda row: row["started_at"],
    )
    assert [(row["status"], row["attempts"]) for row in rows] == [("completed", 1)] * 3
    probe, *others = rows
    for row in others:
        assert row["started_at"] < probe["finished_at"]
    assert summary.completed == 3
