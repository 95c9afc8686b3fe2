"""Cancelling a running job: at every phase of an attempt, for the template generator and the
openai one (through the OpenAI emulator), racing a completion and a worker's death;
and the waiting TTL.

The cancel is what DELETE /api/job does (`store.jobs.cancel` with the user's id); the worker
hears of it in its next heartbeat answer. Whatever the phase, a job ends exactly one of
completed or cancelled, with at most one refund, and nothing of it stays in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from starlette.applications import Starlette

from storyq.config import Settings
from storyq.generation import (
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    TemplateGenerator,
)
from storyq.generation.openai_chat import OpenAIGenerator
from storyq.queue import Dispatcher
from storyq.store import JobNotCancellable, Store
from storyq_local.emulators import openai as openai_emulator
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.servers import ThreadedServer, serve_in_thread
from storyq_worker.attempt import run_attempt
from storyq_worker.context import WorkerContext, open_context
from storyq_worker.heartbeats import HeartbeatBatcher
from storyq_worker.invocation import run_invocation
from storyq_worker.summary import Outcome
from storyq_worker.sweep import sweep
from tests.support.polling import eventually
from tests.worker.helpers import enqueue, job_row, ledger
from tests.worker.test_guarantees import Held, redis_entries

# The contract: the generation stops within 2 s of the DELETE; the next job starts within 3 s.
STOP_WITHIN_SECONDS = 2.0
NEXT_START_WITHIN_SECONDS = 3.0


class Recorded:
    """Wraps a generator and records, per job, when its generation was stopped from outside."""

    name = "recorded"

    def __init__(
        self, inner: TemplateGenerator | OpenAIGenerator, *, closed_early: list[float] | None = None
    ) -> None:
        self._inner = inner
        self.kind = "openai" if isinstance(inner, OpenAIGenerator) else "template"
        # The OpenAI emulator's record of the streams whose client closed them early.
        self.closed_early = closed_early if closed_early is not None else []
        self.writing: dict[str, asyncio.Event] = {}
        self.stopped_at: dict[str, float] = {}

    def started(self, job_id: uuid.UUID) -> asyncio.Event:
        return self.writing.setdefault(str(job_id), asyncio.Event())

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        writing = self.started(uuid.UUID(request.job_id))

        def progress(text: str) -> None:
            if text:
                writing.set()
            on_progress(text)

        try:
            return await self._inner.generate(request, progress)
        except asyncio.CancelledError:
            self.stopped_at[request.job_id] = time.monotonic()
            raise


class CancelledOnTheWayOut:
    """Writes its story, then its user cancels (DELETE) just before the result is handed back:
    the generation finished first."""

    name = "cancelled-on-the-way-out"

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url

    async def generate(
        self, request: GenerationRequest, on_progress: ProgressCallback
    ) -> GenerationResult:
        on_progress("A story that was finished")
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            conn.execute("select public.cancel_story_job(%s)", (request.job_id,))
        return GenerationResult(
            title="Finished",
            content="A story that was finished before the cancel.",
            words=8,
            target_words=request.target_words,
            finish_reason="stop",
            generator=self.name,
        )


@pytest.fixture
async def held(worker_settings: Settings) -> AsyncIterator[tuple[WorkerContext, Held]]:
    generator = Held()
    async with open_context(worker_settings, generator=generator) as context:
        yield context, generator


def refunds_once_and_ends(database_url: str, job_id: uuid.UUID, status: str) -> None:
    row = job_row(database_url, job_id)
    refunded = status == "cancelled"
    assert (row["status"], row["refunded"]) == (status, refunded), row
    assert ledger(database_url, job_id) == ({"debit": 1, "refund": 1} if refunded else {"debit": 1})


async def test_a_job_cancelled_between_its_claim_and_its_start_never_starts(
    worker_stack: LocalStack,
    held: tuple[WorkerContext, Held],
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a claimed job whose user cancels it before the worker starts it
    ctx, generator = held
    job_id = await enqueue(store, dispatcher, user)
    [claim] = await dispatcher.claim(1, lease_seconds=60)
    cancelled = await store.jobs.cancel(job_id, user_id=user)
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "user")

    # When the worker runs its claim
    outcome = await run_attempt(ctx, claim, abandon=asyncio.Event())

    # Then it never generates, the job stays cancelled (refunded once) and its slot is free
    assert outcome is Outcome.SKIPPED
    assert not generator.started.is_set()
    refunds_once_and_ends(worker_stack.database_url, job_id, "cancelled")
    assert redis_entries(worker_stack, job_id) == []


@pytest.mark.parametrize("phase", ["started", "writing"])
async def test_a_cancel_stops_the_generation_within_2_s_and_refunds_once(
    worker_stack: LocalStack,
    held: tuple[WorkerContext, Held],
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    phase: str,
) -> None:
    # Given an attempt that just started, or has been writing for a few heartbeats
    ctx, generator = held
    job_id = await enqueue(store, dispatcher, user)
    [claim] = await dispatcher.claim(1, lease_seconds=60)
    attempt = asyncio.create_task(run_attempt(ctx, claim, abandon=asyncio.Event()))
    await asyncio.wait_for(generator.started.wait(), 10)
    if phase == "writing":
        await asyncio.sleep(ctx.heartbeats.every_seconds * 2.5)

    # When its user cancels it (DELETE: 202, the job still processing)
    requested_at = time.monotonic()
    requested = await store.jobs.cancel(job_id, user_id=user)
    assert (requested.status, requested.cancel_requested) == ("processing", True)

    # Then the generation stops within 2 s, the job ends cancelled and refunded once, the
    # story keeps the text written so far (what the writer had not sent yet is sent before
    # the cancel is recorded), and Redis forgets the job
    outcome = await asyncio.wait_for(attempt, 10)
    assert outcome is Outcome.CANCELLED
    assert generator.cancelled_at[str(job_id)] - requested_at < STOP_WITHIN_SECONDS
    refunds_once_and_ends(worker_stack.database_url, job_id, "cancelled")
    row = job_row(worker_stack.database_url, job_id)
    assert (row["story_status"], row["cancel_reason"]) == ("cancelled", "user")
    assert row["content"] == "A held story, five words."
    assert redis_entries(worker_stack, job_id) == []


async def test_a_generation_that_finished_before_the_cancel_completes_unrefunded(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a generation whose user cancels it as it hands back the finished story
    generator = CancelledOnTheWayOut(worker_stack.database_url)
    job_id = await enqueue(store, dispatcher, user)
    [claim] = await dispatcher.claim(1, lease_seconds=60)

    # When the worker records the result
    async with open_context(worker_settings, generator=generator) as ctx:
        outcome = await run_attempt(ctx, claim, abandon=asyncio.Event())

    # Then the fence lets the completion through: completed, not refunded
    assert outcome is Outcome.COMPLETED
    refunds_once_and_ends(worker_stack.database_url, job_id, "completed")
    assert job_row(worker_stack.database_url, job_id)["cancel_requested_at"] is not None
    assert redis_entries(worker_stack, job_id) == []


async def test_a_cancel_racing_the_completion_has_exactly_one_outcome(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given generations that finish at the moment their user cancels them, give or take a tick
    rng = random.Random(19)
    outcomes: list[Outcome] = []
    for _ in range(8):
        generator = Held()
        job_id = await enqueue(store, dispatcher, user)
        [claim] = await dispatcher.claim(1, lease_seconds=60)
        async with open_context(worker_settings, generator=generator) as ctx:
            attempt = asyncio.create_task(run_attempt(ctx, claim, abandon=asyncio.Event()))
            await asyncio.wait_for(generator.started.wait(), 10)
            tick = ctx.heartbeats.every_seconds

            # The cancel is heard at the next tick: the finish is drawn over three ticks, so
            # either may come first.
            async def finish(gate: asyncio.Event = generator.gate, tick: float = tick) -> None:
                await asyncio.sleep(rng.uniform(0, tick * 3))
                gate.set()

            async def cancel(job_id: uuid.UUID = job_id, tick: float = tick) -> None:
                await asyncio.sleep(rng.uniform(0, tick))
                with contextlib.suppress(JobNotCancellable):  # 409: it completed first
                    await store.jobs.cancel(job_id, user_id=user)

            # When both happen
            await asyncio.gather(finish(), cancel())
            outcome = await asyncio.wait_for(attempt, 10)

        # Then the job is completed (unrefunded) or cancelled (refunded once), never both
        assert outcome in (Outcome.COMPLETED, Outcome.CANCELLED)
        status = "completed" if outcome is Outcome.COMPLETED else "cancelled"
        refunds_once_and_ends(worker_stack.database_url, job_id, status)
        assert redis_entries(worker_stack, job_id) == []
        outcomes.append(outcome)
    print(f"race outcomes: {sorted(o.value for o in outcomes)}")


async def test_a_worker_that_dies_after_the_cancel_request_leaves_the_job_cancelled(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given an attempt whose heartbeats are far apart (it will not hear of the cancel) ...
    generator = Held()
    job_id = await enqueue(store, dispatcher, user)
    [claim] = await dispatcher.claim(1, lease_seconds=worker_settings.lease_seconds)
    async with open_context(worker_settings, generator=generator) as context:
        silent = HeartbeatBatcher(context.store, every_seconds=30.0, request_timeout_seconds=20.0)
        ctx = dataclasses.replace(context, heartbeats=silent)
        attempt = asyncio.create_task(run_attempt(ctx, claim, abandon=asyncio.Event()))
        await asyncio.wait_for(generator.started.wait(), 10)

        # ... whose user cancels it, and whose worker then dies (nothing more is written)
        await store.jobs.cancel(job_id, user_id=user)
        attempt.cancel()
        await asyncio.gather(attempt, return_exceptions=True)
        await silent.close()

        # When the sweeps come by once its heartbeat is older than a lease
        async def swept() -> bool:
            await sweep(ctx)
            return bool(job_row(worker_stack.database_url, job_id)["status"] != "processing")

        await eventually(swept, timeout=worker_settings.lease_seconds * 6, every=0.2)

    # Then it is cancelled and refunded once, not retried, and Redis forgets it
    refunds_once_and_ends(worker_stack.database_url, job_id, "cancelled")
    assert job_row(worker_stack.database_url, job_id)["attempts"] == 1
    await sweep_once(worker_settings)
    assert redis_entries(worker_stack, job_id) == []


async def sweep_once(settings: Settings) -> None:
    async with open_context(settings) as ctx:
        await sweep(ctx)


@pytest.fixture(scope="module")
def openai_app() -> Starlette:
    return openai_emulator.create_app(api_key="test-key")


@pytest.fixture(scope="module")
def openai_server(openai_app: Starlette) -> Iterator[ThreadedServer]:
    server = serve_in_thread(openai_app)
    yield server
    server.stop()


@pytest.fixture(params=["template", "openai"])
def endless(
    request: pytest.FixtureRequest, openai_app: Starlette, openai_server: ThreadedServer
) -> Recorded:
    """A generator that would write for a minute: the template one, or openai through the
    emulator (its `endless` model)."""
    if request.param == "openai":
        return Recorded(
            OpenAIGenerator(
                api_key="test-key",
                model="endless",
                base_url=f"{openai_server.url}/v1",
                timeout_seconds=15.0,
            ),
            closed_early=openai_app.state.recorded.closed_early,
        )
    return Recorded(TemplateGenerator(delay_seconds=60.0))


async def test_the_worker_stops_a_cancelled_generation_and_starts_the_next_job(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
    endless: Recorded,
) -> None:
    # Given one slot, a worker writing the first of four long stories (with the production
    # lease, so heartbeats go at the production tick, context.PROGRESS_SECONDS)
    settings = worker_settings.model_copy(update={"max_active_jobs": 1, "lease_seconds": 60.0})
    generator = endless
    jobs = [await enqueue(store, dispatcher, user) for _ in range(4)]
    closed_before = len(endless.closed_early)
    worker = asyncio.create_task(run_invocation(settings, generator=generator))

    # When its user cancels each story in turn once it is being written
    stops: list[float] = []
    next_starts: list[float] = []
    for job_id, next_job in itertools.pairwise(jobs):
        await asyncio.wait_for(generator.started(job_id).wait(), 15)
        requested_at = time.monotonic()
        answer = await store.jobs.cancel(job_id, user_id=user)
        assert answer.status == "processing"
        await asyncio.wait_for(generator.started(next_job).wait(), 15)
        stops.append(generator.stopped_at[str(job_id)] - requested_at)
        started_at = job_row(worker_stack.database_url, next_job)["started_at"]
        cancelled_at = job_row(worker_stack.database_url, job_id)["finished_at"]
        assert started_at >= cancelled_at  # the cap held: the next one started after the end
        next_starts.append(time.monotonic() - requested_at)
    await store.jobs.cancel(jobs[3], user_id=user)
    await asyncio.wait_for(worker, 15)

    # Then each generation stopped within 2 s and the next job started within 3 s; every job
    # is cancelled and refunded once, and with openai the stream was closed early
    print(
        f"{endless.kind}: DELETE -> stop p50 {statistics.median(stops):.3f} s,"
        f" max {max(stops):.3f} s; DELETE -> next job writing max {max(next_starts):.3f} s"
    )
    assert max(stops) < STOP_WITHIN_SECONDS
    assert max(next_starts) < NEXT_START_WITHIN_SECONDS
    for job_id in jobs:
        refunds_once_and_ends(worker_stack.database_url, job_id, "cancelled")
        assert redis_entries(worker_stack, job_id) == []
    if endless.kind == "openai":
        await eventually(lambda: len(endless.closed_early) - closed_before >= 4, timeout=5)


async def test_a_job_waiting_past_its_ttl_is_cancelled_and_never_starts(
    worker_stack: LocalStack,
    worker_settings: Settings,
    store: Store,
    dispatcher: Dispatcher,
    user: uuid.UUID,
) -> None:
    # Given a job that has waited two hours (JOB_TTL_SECONDS: one), one that came back for a
    # retry after the same wait, and a fresh one
    stale, retried, fresh = [await enqueue(store, dispatcher, user) for _ in range(3)]
    with psycopg.connect(worker_stack.database_url, autocommit=True) as conn:
        conn.execute(
            "update public.story_jobs set queued_at = now() - interval '2 hours'"
            " where id = any(%s)",
            ([stale, retried],),
        )
        conn.execute(
            "update public.story_jobs set attempts = 1, started_at = now() - interval '1 hour'"
            " where id = %s",
            (retried,),
        )
    settings = worker_settings.model_copy(update={"job_ttl_seconds": 3600.0})

    # When a sweep runs
    async with open_context(settings) as ctx:
        summary = await sweep(ctx)

    # Then the stale one is cancelled as expired, refunded, and gone from Redis; the others wait
    assert summary.expired == 1
    refunds_once_and_ends(worker_stack.database_url, stale, "cancelled")
    assert job_row(worker_stack.database_url, stale)["cancel_reason"] == "expired"
    assert redis_entries(worker_stack, stale) == []
    for waiting in (retried, fresh):
        assert job_row(worker_stack.database_url, waiting)["status"] == "pending"
    claims = await dispatcher.claim(5, lease_seconds=60)
    assert stale not in {claim.job_id for claim in claims}
