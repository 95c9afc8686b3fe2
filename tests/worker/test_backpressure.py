"""Provider back-pressure shared by every worker, end to end: real worker invocations (each with
its own clients, as separate Lambda invocations have) against the OpenAI emulator answering 429
for a while, the scratch Postgres and a private Redis.

A 429 pauses claims for every worker for as long as the provider asked; the refused attempts
go back without being spent; the pause ends with one probe, and then every job runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from storyq.config import Settings
from storyq.generation import (
    GenerationRequest,
    GenerationResult,
    PermanentGenerationError,
    ProgressCallback,
)
from storyq.queue import Claim, Dispatcher
from storyq.store import Store
from storyq_local.emulators.openai import Recorded, create_app
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.servers import ThreadedServer, serve_in_thread
from storyq_worker.attempt import run_attempt
from storyq_worker.context import open_context
from storyq_worker.invocation import run_invocation
from storyq_worker.summary import Outcome, Summary
from tests.worker.helpers import all_terminal, drive, enqueue, job_row

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


async def test_a_refused_probe_renews_the_pause_and_spends_its_attempt(
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

    # When workers run: the first claim is the probe, and the provider refuses it
    summary = await drive(
        settings, lambda: job_row(worker_stack.database_url, job_id)["status"] == "completed"
    )

    # Then the pause was renewed for what the provider asked (the 2 s left) and the probe's
    # attempt was spent like any failure (a provider that never recovers must not hold the
    # job for good); the retry after the pause wrote the story
    row = job_row(worker_stack.database_url, job_id)
    assert (row["status"], row["attempts"]) == ("completed", 2)
    assert (summary.retried, summary.paused) == (1, 0)
    assert [status for _, name, status in provider.recorded.log if name == model] == [429, 200]
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


async def _run_for(settings: Settings, seconds: float) -> None:
    """One worker invocation with plenty of Lambda time left, stopped after `seconds`."""
    task = asyncio.create_task(
        run_invocation(settings, concurrency=1, remaining_seconds=lambda: 900.0)
    )
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class Refusing:
    """A provider that refuses every request with `model`, and how many requests a job takes
    to fail there."""

    provider: Provider
    model: str
    requests: int


@pytest.fixture(
    params=[
        # the first refusal (no pause yet) is free; then three probes, each refused
        ("rate-limited:0.2", 4),
        # an account out of credit is not back-pressure: three attempts with backoff
        ("out-of-quota", 3),
    ],
    ids=["rate-limited", "out-of-quota"],
)
def refusing(request: pytest.FixtureRequest, provider: Provider) -> Refusing:
    model, requests = request.param
    return Refusing(provider, model, requests)


async def test_a_provider_that_refuses_every_request_fails_the_job_and_refunds_it(
    worker_stack: LocalStack,
    worker_settings: Settings,
    refusing: Refusing,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a provider that refuses every request: 429 with a short Retry-After (a hard limit
    # that never lifts), or 429 insufficient_quota (an account out of credit)
    settings = openai_settings(worker_settings, refusing.provider.server, refusing.model)
    job_id = await enqueue(store, dispatcher, user, target_words=80, max_attempts=3)
    db = worker_stack.database_url

    # When workers keep at it (invocations one after another, as the schedule starts them)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while job_row(db, job_id)["status"] != "failed" and loop.time() < deadline:
        await _run_for(settings, deadline - loop.time())

    # Then the job does not wait for good: each refused probe (or, out of quota, each attempt)
    # spent one of its attempts, and after the last it failed and was refunded
    row = job_row(db, job_id)
    assert (row["status"], row["attempts"], row["refunded"]) == ("failed", 3, True)
    assert refusing.provider.recorded.requests[refusing.model] == refusing.requests


class _Hangs:
    """A provider that never sends its first chunk."""

    name = "hangs"

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        request.usage.model = "gpt-4o-mini"
        self.started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class _AnswersThenRefuses:
    """A provider that takes the request (its first chunk), then refuses the content at once."""

    name = "answers"

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        request.usage.model = "gpt-4o-mini"
        request.usage.answered.set()
        raise PermanentGenerationError("content_refused", "I can't write that")


async def _probe_claim(dispatcher: Dispatcher, store: Store, user: uuid.UUID) -> Claim:
    """The one claim let through after a pause that has just ended."""
    job_id = await enqueue(store, dispatcher, user, target_words=80)
    await dispatcher.pause(0.05, reason="rate_limited")
    await asyncio.sleep(0.1)
    [claim] = await dispatcher.claim(5, lease_seconds=30)
    assert claim.probe
    assert claim.job_id == job_id
    return claim


@pytest.mark.usefixtures("worker_stack")
async def test_a_probe_stopped_before_the_provider_answered_leaves_the_pause(
    worker_settings: Settings, store: Store, dispatcher: Dispatcher, user: uuid.UUID
) -> None:
    # Given the probe after a pause, whose request the provider has not answered yet
    claim = await _probe_claim(dispatcher, store, user)
    hangs = _Hangs()
    abandon = asyncio.Event()
    async with open_context(worker_settings, generator=hangs) as ctx:
        attempt = asyncio.create_task(run_attempt(ctx, claim, abandon=abandon))
        await asyncio.wait_for(hangs.started.wait(), 10)

        # When its worker shuts down before any answer
        abandon.set()
        outcome = await asyncio.wait_for(attempt, 10)

    # Then the job goes back, the pause stays (nothing said the provider recovered), and the
    # probe is handed back: the next claim probes
    assert outcome is Outcome.RELEASED
    pause = await dispatcher.provider_pause()
    assert pause is not None
    assert not pause.probing
    [next_claim] = await dispatcher.claim(5, lease_seconds=30)
    assert next_claim.probe


@pytest.mark.usefixtures("worker_stack")
async def test_a_probe_answered_just_before_its_generation_ended_ends_the_pause(
    worker_settings: Settings, store: Store, dispatcher: Dispatcher, user: uuid.UUID
) -> None:
    claim = await _probe_claim(dispatcher, store, user)

    # When the provider takes the probe's request, and the generation ends right after
    async with open_context(worker_settings, generator=_AnswersThenRefuses()) as ctx:
        outcome = await asyncio.wait_for(run_attempt(ctx, claim, abandon=asyncio.Event()), 10)

    # Then the pause is over for every worker
    assert outcome is Outcome.FAILED
    assert await dispatcher.provider_pause() is None
