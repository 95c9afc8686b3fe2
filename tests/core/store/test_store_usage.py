"""storyq.store's usage of attempts: what a worker records about an attempt's tokens and cost,
what the completed job's result then shows, and the day's figures of the queue counts.

Against the real SQL functions behind the Supabase emulator, on the session's shared database
(the day's figures are compared before and after, as other modules' jobs are there too).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator

import pytest

from storyq.clients import async_postgrest
from storyq.config import Settings
from storyq.store import (
    AttemptUsage,
    EnqueueRequest,
    Failure,
    InvalidArgument,
    ResultUsage,
    StartedJob,
    Store,
)
from storyq_local.stack.servers import free_port
from storyq_local.stack.users import ensure_user

RETRY = Failure(code="upstream_timeout", message="the model took too long", retryable=True)
# Starts here are never held back by the cap, and count other attempts as live for an hour.
NO_CAP = 1_000_000
LIVE_SECONDS = 3600.0


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    db = async_postgrest(settings)
    yield Store(db)
    await db.aclose()


@pytest.fixture
async def user(store: Store, database_url: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    ensure_user(database_url, user_id)
    await store.credits.grant(user_id, 10)
    return user_id


async def started(store: Store, user: uuid.UUID) -> StartedJob:
    """A new job whose first attempt runs."""
    job = await store.jobs.enqueue(
        EnqueueRequest(user_id=user, prompt="a comet", target_words=600, cost=1, max_attempts=3)
    )
    assert job.fence is not None
    return await start(store, job.job_id, job.fence)


async def start(store: Store, job_id: uuid.UUID, fence: int) -> StartedJob:
    attempt = await store.jobs.start(job_id, fence, max_active=NO_CAP, live_seconds=LIVE_SECONDS)
    assert isinstance(attempt, StartedJob), attempt
    return attempt


def usage(
    attempt: StartedJob,
    prompt: int,
    completion: int,
    cost: float,
    *,
    estimated: bool = False,
    model: str | None = "gpt-4o-mini",
) -> AttemptUsage:
    return AttemptUsage(attempt.job_id, attempt.fence, model, prompt, completion, cost, estimated)


async def test_a_completed_job_shows_what_its_attempts_cost(store: Store, user: uuid.UUID) -> None:
    # Given a job whose first attempt used tokens and failed, and whose second one completes
    first = await started(store, user)
    assert await store.jobs.record_usage([usage(first, 200, 300, 0.0005)]) == 1
    retried = await store.jobs.fail(first.job_id, fence=first.fence, failure=RETRY)
    assert retried.fence is not None
    second = await start(store, first.job_id, retried.fence)

    # When the second attempt records its usage (a cut stream: counted by the worker) before
    # it completes
    assert await store.jobs.record_usage([usage(second, 250, 1200, 0.0011, estimated=True)]) == 1
    await store.jobs.complete(second.job_id, fence=second.fence, content="The end.")

    # Then the job's result shows the sum over both attempts
    job = await store.jobs.get(first.job_id)
    assert job.result is not None
    assert job.result.usage == ResultUsage(
        prompt_tokens=450, completion_tokens=1500, cost_usd=0.0016, attempts=2, estimated=True
    )


async def test_recording_an_attempts_usage_again_replaces_it(store: Store, user: uuid.UUID) -> None:
    # Given a running attempt whose usage was recorded once (and the answer to that was lost)
    attempt = await started(store, user)
    await store.jobs.record_usage([usage(attempt, 100, 900, 0.0006)])

    # When the worker records it again, then its final totals
    assert await store.jobs.record_usage([usage(attempt, 100, 900, 0.0006)]) == 1
    assert await store.jobs.record_usage([usage(attempt, 120, 1000, 0.00068, model=None)]) == 1
    await store.jobs.complete(attempt.job_id, fence=attempt.fence, content="The end.")

    # Then the story cost the totals, not their sum
    job = await store.jobs.get(attempt.job_id)
    assert job.result is not None
    assert job.result.usage == ResultUsage(
        prompt_tokens=120, completion_tokens=1000, cost_usd=0.00068, attempts=1
    )


async def test_a_job_completed_without_recorded_usage_shows_none(
    store: Store, user: uuid.UUID
) -> None:
    attempt = await started(store, user)
    await store.jobs.complete(attempt.job_id, fence=attempt.fence, content="The end.")
    job = await store.jobs.get(attempt.job_id)
    assert job.result is not None
    assert job.result.usage is None


async def test_unknown_attempts_are_skipped(store: Store, user: uuid.UUID) -> None:
    # Given a running attempt, an attempt of it that never was, and a job that does not exist
    attempt = await started(store, user)
    never = AttemptUsage(attempt.job_id, attempt.fence + 10_000, None, 1, 1, 0.0, False)
    nowhere = AttemptUsage(uuid.uuid4(), 1, None, 1, 1, 0.0, False)

    # When all three are recorded at once, Then only the real one is written
    assert await store.jobs.record_usage([never, usage(attempt, 5, 6, 0.01), nowhere]) == 1


async def test_bad_usage_is_refused_and_nothing_is_written(store: Store, user: uuid.UUID) -> None:
    # Given a running attempt
    attempt = await started(store, user)

    # When a batch holds a negative count or a cost that is not a number
    with pytest.raises(InvalidArgument, match="prompt_tokens is negative"):
        await store.jobs.record_usage([usage(attempt, 10, 10, 0.1), usage(attempt, -1, 10, 0.1)])
    with pytest.raises(InvalidArgument):
        await store.jobs.record_usage([usage(attempt, 10, 10, math.nan)])

    # Then none of it was written: the completed job shows no usage
    await store.jobs.complete(attempt.job_id, fence=attempt.fence, content="The end.")
    job = await store.jobs.get(attempt.job_id)
    assert job.result is not None
    assert job.result.usage is None


async def test_nothing_to_record_sends_no_request(settings: Settings) -> None:
    # A store whose database cannot be reached: any request would fail
    nowhere = f"http://127.0.0.1:{free_port()}"
    db = async_postgrest(settings.model_copy(update={"supabase_url": nowhere}))
    try:
        assert await Store(db).jobs.record_usage([]) == 0
    finally:
        await db.aclose()


async def test_the_queue_counts_show_the_usage_of_attempts_started_today(
    store: Store, user: uuid.UUID, database_url: str
) -> None:
    # Given the counts as they are, and a second user (one runs one story at a time)
    before = await store.admin.counts()
    second = uuid.uuid4()
    ensure_user(database_url, second)
    await store.credits.grant(second, 10)

    # When two attempts record their usage, one of them before it is cancelled
    one, two = await started(store, user), await started(store, second)
    await store.jobs.record_usage([usage(one, 300, 1200, 0.25), usage(two, 50, 0, 0.5)])
    await store.jobs.cancel(two.job_id)
    await store.jobs.cancel_running(two.job_id, fence=two.fence)

    # Then today's figures grew by both, whatever became of the attempts
    after = await store.admin.counts()
    assert after.prompt_tokens_today - before.prompt_tokens_today == 350
    assert after.completion_tokens_today - before.completion_tokens_today == 1200
    assert after.cost_usd_today - before.cost_usd_today == pytest.approx(0.75)
