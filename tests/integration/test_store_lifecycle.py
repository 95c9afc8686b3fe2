"""storyq.store's job state machine through PostgREST: fencing, retries, refunds, cancel, reads.

The worker's view (start, heartbeat, complete, fail, requeue) and the API's (get, list, cancel,
story), against the real SQL functions behind the Supabase emulator.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import psycopg
import pytest

from storyq.clients import async_postgrest
from storyq.config import Settings
from storyq.store import (
    EnqueueRequest,
    Failure,
    JobCursor,
    JobNotCancellable,
    JobNotFound,
    JobNotStartable,
    StaleAttempt,
    Store,
    StoryNotFound,
)
from storyq_local.users import ensure_user

RETRY = Failure(code="upstream_timeout", message="the model took too long", retryable=True)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    db = async_postgrest(settings)
    yield Store(db)
    await db.aclose()


@pytest.fixture
async def user(store: Store, database_url: str) -> uuid.UUID:
    """A signed-up user holding 10 credits."""
    user_id = uuid.uuid4()
    ensure_user(database_url, user_id)
    await store.credits.grant(user_id, 10)
    return user_id


async def enqueue(store: Store, user: uuid.UUID, prompt: str = "a comet") -> uuid.UUID:
    job = await store.jobs.enqueue(
        EnqueueRequest(user_id=user, prompt=prompt, target_words=600, cost=1, max_attempts=3)
    )
    return job.job_id


def refunds(database_url: str, job_id: uuid.UUID) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from public.credit_ledger where job_id = %s and kind = 'refund'",
            (job_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_stale_attempt_can_neither_complete_nor_fail(store: Store, user: uuid.UUID) -> None:
    # Given a job whose first attempt failed and whose second attempt is running
    job_id = await enqueue(store, user)
    await store.jobs.start(job_id, 1)
    await store.jobs.fail(job_id, attempt=1, failure=RETRY)
    await store.jobs.start(job_id, 2)

    # When the first attempt's worker wakes up and reports
    with pytest.raises(StaleAttempt):
        await store.jobs.complete(job_id, attempt=1, content="a late story")
    with pytest.raises(StaleAttempt):
        await store.jobs.fail(job_id, attempt=1, failure=RETRY)
    assert await store.jobs.heartbeat(job_id, 1) is False
    # Nor may a duplicate dispatch claim the running attempt again
    with pytest.raises(StaleAttempt):
        await store.jobs.start(job_id, 2)

    # Then the second attempt still owns the job and its result is the one kept
    job = await store.jobs.get(job_id)
    assert (job.status, job.attempts) == ("processing", 2)
    assert await store.jobs.heartbeat(job_id, 2, words=250) is True
    done = await store.jobs.complete(
        job_id, attempt=2, content="the real story", title="Comet", result={"quality": 0.8}
    )
    story = await store.stories.get(done.story_id, user_id=user)
    assert (story.status, story.content, story.words, story.title) == (
        "ready",
        "the real story",
        3,
        "Comet",
    )
    assert (await store.jobs.get(job_id)).result == {"quality": 0.8}


async def test_three_failures_fail_the_job_and_refund_once(
    store: Store, user: uuid.UUID, database_url: str
) -> None:
    # Given a job (balance 10 -> 9)
    job_id = await enqueue(store, user)
    assert await store.credits.balance(user) == 9

    # When all three attempts fail with a retryable error
    outcomes = []
    for attempt in (1, 2, 3):
        started = await store.jobs.start(job_id, attempt)
        assert started.attempt == attempt
        outcomes.append(await store.jobs.fail(job_id, attempt=attempt, failure=RETRY))

    # Then the first two are retried and the third fails the job, refunded
    assert [o.will_retry for o in outcomes] == [True, True, False]
    assert [o.refunded for o in outcomes] == [False, False, True]
    assert outcomes[2].next_attempt_at is None
    job = await store.jobs.get(job_id, user_id=user)
    assert (job.status, job.error_code, job.refunded) == ("failed", "upstream_timeout", True)
    assert (await store.stories.get(job.story_id)).status == "failed"
    assert await store.credits.balance(user) == 10
    assert refunds(database_url, job_id) == 1
    # And nothing can start it again
    with pytest.raises(JobNotStartable):
        await store.jobs.start(job_id, 4)


async def test_a_retry_is_due_after_its_delay(store: Store, user: uuid.UUID) -> None:
    job_id = await enqueue(store, user)
    await store.jobs.start(job_id, 1)
    delayed = Failure(code="rate_limited", message="429", retryable=True, retry_delay_seconds=90)

    outcome = await store.jobs.fail(job_id, attempt=1, failure=delayed)

    job = await store.jobs.get(job_id)
    assert outcome.next_attempt_at is not None
    assert outcome.next_attempt_at - job.updated_at == timedelta(seconds=90)
    dispatchable = {d.job_id: d for d in await store.jobs.dispatchable()}
    assert dispatchable[job_id].next_attempt_at == outcome.next_attempt_at
    assert dispatchable[job_id].attempts == 1


async def test_a_stalled_attempt_is_found_and_requeued(
    store: Store, user: uuid.UUID, database_url: str
) -> None:
    # Given a running attempt whose worker went silent ten minutes ago
    job_id = await enqueue(store, user)
    await store.jobs.start(job_id, 1)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update public.story_jobs set heartbeat_at = now() - interval '10 minutes'"
            " where id = %s",
            (job_id,),
        )

    # When the sweeper looks for attempts silent for a minute
    stalled = [s for s in await store.jobs.stalled(stalled_for_seconds=60) if s.job_id == job_id]

    # Then it finds it and requeues it as a failed attempt
    assert [(s.attempt, s.user_id) for s in stalled] == [(1, user)]
    outcome = await store.jobs.requeue_stalled(job_id, attempt=1)
    assert (outcome.status, outcome.attempts) == ("pending", 1)
    assert (await store.jobs.get(job_id)).error_code == "worker_lost"
    with pytest.raises(StaleAttempt):
        await store.jobs.requeue_stalled(job_id, attempt=1)


async def test_cancel_refunds_a_pending_job_only(store: Store, user: uuid.UUID) -> None:
    # Given one pending and one processing job
    pending = await enqueue(store, user, "pending one")
    running = await enqueue(store, user, "running one")
    await store.jobs.start(running, 1)
    assert await store.credits.balance(user) == 8

    # When the user cancels both
    cancelled = await store.jobs.cancel(pending, user_id=user)
    with pytest.raises(JobNotCancellable) as refused:
        await store.jobs.cancel(running, user_id=user)

    # Then the pending one is cancelled and refunded, the running one goes on (409)
    assert (cancelled.status, cancelled.refunded) == ("cancelled", True)
    assert refused.value.status == 409
    assert await store.credits.balance(user) == 9
    assert (await store.stories.get(cancelled.story_id)).status == "cancelled"
    with pytest.raises(JobNotStartable):
        await store.jobs.start(pending, 1)


async def test_another_users_job_and_story_are_not_found(
    store: Store, user: uuid.UUID, database_url: str
) -> None:
    # Given a job of this user, and a stranger
    job_id = await enqueue(store, user)
    job = await store.jobs.get(job_id, user_id=user)
    stranger = uuid.uuid4()
    ensure_user(database_url, stranger)

    # Then the stranger sees 404s, exactly as for jobs that do not exist
    for call in (
        store.jobs.get(job_id, user_id=stranger),
        store.jobs.cancel(job_id, user_id=stranger),
        store.jobs.get(uuid.uuid4()),
        store.jobs.start(uuid.uuid4(), 1),
    ):
        with pytest.raises(JobNotFound) as missing:
            await call
        assert missing.value.status == 404
    with pytest.raises(StoryNotFound):
        await store.stories.get(job.story_id, user_id=stranger)
    assert (await store.jobs.get(job_id)).status == "pending"


async def test_the_story_exists_from_enqueue_on(store: Store, user: uuid.UUID) -> None:
    job_id = await enqueue(store, user, "a quiet harbour")

    job = await store.jobs.get(job_id, user_id=user)
    story = await store.stories.get(job.story_id, user_id=user)

    assert (story.status, story.content, story.prompt, story.job_id) == (
        "pending",
        None,
        "a quiet harbour",
        job_id,
    )


async def test_a_users_jobs_page_newest_first(store: Store, user: uuid.UUID) -> None:
    # Given five jobs, one of them started
    created = [await enqueue(store, user, f"story {i}") for i in range(5)]
    await store.jobs.start(created[0], 1)

    # When the user pages through them two at a time
    pages = [await store.jobs.list_for_user(user, limit=2)]
    while (cursor := pages[-1].next_cursor) is not None:
        token = cursor.encode()  # what travels through the API as nextCursor
        pages.append(await store.jobs.list_for_user(user, limit=2, cursor=JobCursor.decode(token)))

    # Then they see every job once, newest first, in three pages
    seen = [job.job_id for page in pages for job in page.jobs]
    assert seen == list(reversed(created))
    assert [len(p.jobs) for p in pages] == [2, 2, 1]
    processing = await store.jobs.list_for_user(user, status="processing")
    assert [j.job_id for j in processing.jobs] == [created[0]]
    with pytest.raises(ValueError, match="cursor"):
        JobCursor.decode("not a cursor")
