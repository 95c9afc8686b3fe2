"""storyq.store's operator calls: credits, queue counts, clean, retry, empty.

These act on the whole queue (empty cancels every pending job), so this module runs against a
private migrated database and its own Supabase emulator, not the session's shared ones.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import psycopg
import pytest
from psycopg import sql

from storyq.clients import async_postgrest
from storyq.config import DEV_JWT_SECRET, Settings
from storyq.store import (
    EnqueueRequest,
    Failure,
    InvalidAmount,
    InvalidStatus,
    JobNotRetryable,
    Store,
    UserNotFound,
)
from storyq_local.servers import serve_in_thread
from storyq_local.supabase_emulator import create_app
from storyq_local.users import ensure_user
from tests.support.databases import create_scratch_database, drop_database

FINAL = Failure(code="content_policy", message="refused", retryable=False)


@pytest.fixture(scope="module")
def admin_database(postgres_server_url: str) -> Iterator[str]:
    url = create_scratch_database(postgres_server_url, prefix="storyq_store_admin")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def admin_settings(admin_database: str) -> Iterator[Settings]:
    server = serve_in_thread(create_app(database_url=admin_database, jwt_secret=DEV_JWT_SECRET))
    yield Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        storyq_env="dev",
        supabase_url=server.url,
        supabase_jwt_secret=DEV_JWT_SECRET,  # type: ignore[arg-type]  # coerced to SecretStr
    )
    server.stop()


@pytest.fixture
async def store(admin_settings: Settings, admin_database: str) -> AsyncIterator[Store]:
    # Each test starts from an empty queue.
    with psycopg.connect(admin_database) as conn:
        conn.execute("truncate public.story_jobs, public.stories")
    db = async_postgrest(admin_settings)
    yield Store(db)
    await db.aclose()


@pytest.fixture
async def user(store: Store, admin_database: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    ensure_user(admin_database, user_id)
    await store.credits.grant(user_id, 10, reason="welcome")
    return user_id


async def enqueue(store: Store, user: uuid.UUID) -> uuid.UUID:
    job = await store.jobs.enqueue(
        EnqueueRequest(user_id=user, prompt="a meadow", target_words=500, cost=1, max_attempts=3)
    )
    return job.job_id


def shift(
    database_url: str, job_id: uuid.UUID, column: Literal["started_at", "finished_at"], seconds: int
) -> None:
    """Move one of a job's timestamps into the past (time travel for age-based rules)."""
    statement = sql.SQL(
        "update public.story_jobs set {column} = {column} - make_interval(secs => %s) where id = %s"
    ).format(column=sql.Identifier(column))
    with psycopg.connect(database_url) as conn:
        conn.execute(statement, (seconds, job_id))


async def test_grants_add_up_and_bad_grants_are_refused(store: Store, user: uuid.UUID) -> None:
    assert await store.credits.grant(user, 5) == 15
    assert await store.credits.balance(user) == 15
    assert await store.credits.balance(uuid.uuid4()) == 0
    with pytest.raises(InvalidAmount) as refused:
        await store.credits.grant(user, 0)
    assert refused.value.status == 422
    with pytest.raises(UserNotFound):
        await store.credits.grant(uuid.uuid4(), 5)


async def test_counts_show_the_queue_at_a_glance(
    store: Store, user: uuid.UUID, admin_database: str
) -> None:
    # Given a completed job that took 4 minutes, a failed one, a cancelled, a running, a waiting
    done, failed, cancelled, running, waiting = [await enqueue(store, user) for _ in range(5)]
    for job_id in (done, failed, running):
        await store.jobs.start(job_id, 1)
    await store.jobs.complete(done, attempt=1, content="the end")
    shift(admin_database, done, "started_at", 240)
    await store.jobs.fail(failed, attempt=1, failure=FINAL)
    await store.jobs.cancel(cancelled)

    counts = await store.admin.counts()

    waiting_job = await store.jobs.get(waiting)
    assert (counts.pending, counts.processing, counts.completed) == (1, 1, 1)
    assert (counts.failed, counts.cancelled) == (1, 1)
    assert counts.avg_generation_seconds == pytest.approx(240, abs=1)
    assert counts.oldest_pending_at == waiting_job.queued_at


async def test_clean_removes_old_finished_jobs_but_keeps_stories(
    store: Store, user: uuid.UUID, admin_database: str
) -> None:
    # Given a job completed two hours ago and one completed just now
    old, recent = await enqueue(store, user), await enqueue(store, user)
    for job_id in (old, recent):
        await store.jobs.start(job_id, 1)
        await store.jobs.complete(job_id, attempt=1, content="the end")
    shift(admin_database, old, "finished_at", 7200)
    old_story = (await store.jobs.get(old)).story_id

    # When completed jobs older than an hour are cleaned
    removed = await store.admin.clean("completed", older_than_seconds=3600)

    # Then only the old job row went, and its story is still there for its user
    assert removed == 1
    assert (await store.jobs.get(recent)).status == "completed"
    story = await store.stories.get(old_story, user_id=user)
    assert (story.status, story.job_id) == ("ready", None)
    with pytest.raises(InvalidStatus):
        await store.admin.clean("pending", older_than_seconds=0)  # type: ignore[arg-type]


async def test_retrying_a_failed_job_charges_nothing_and_never_refunds_twice(
    store: Store, user: uuid.UUID
) -> None:
    # Given a job that failed for good and was refunded (balance back to 10)
    job_id = await enqueue(store, user)
    await store.jobs.start(job_id, 1)
    await store.jobs.fail(job_id, attempt=1, failure=FINAL)
    assert await store.credits.balance(user) == 10

    # When an admin retries it
    retried = await store.admin.retry_failed(job_id)

    # Then it is pending with fresh attempts, for free
    assert (retried.status, retried.attempts, retried.error_code) == ("pending", 0, None)
    assert await store.credits.balance(user) == 10
    # And failing again refunds nothing more
    await store.jobs.start(job_id, 1)
    outcome = await store.jobs.fail(job_id, attempt=1, failure=FINAL)
    assert (outcome.status, outcome.refunded) == ("failed", True)
    assert await store.credits.balance(user) == 10
    # Only failed jobs can be retried
    pending = await enqueue(store, user)
    with pytest.raises(JobNotRetryable):
        await store.admin.retry_failed(pending)


async def test_empty_cancels_and_refunds_every_waiting_job(store: Store, user: uuid.UUID) -> None:
    # Given three waiting jobs (one of them a delayed retry) and a running one
    waiting = [await enqueue(store, user) for _ in range(3)]
    await store.jobs.start(waiting[2], 1)
    await store.jobs.fail(
        waiting[2],
        attempt=1,
        failure=Failure(code="busy", message="later", retryable=True, retry_delay_seconds=600),
    )
    running = await enqueue(store, user)
    await store.jobs.start(running, 1)
    assert await store.credits.balance(user) == 6

    # When the queue is emptied
    cancelled = await store.admin.empty()

    # Then the waiting ones are cancelled and refunded; the running one is untouched
    assert sorted(cancelled) == sorted(waiting)
    assert await store.credits.balance(user) == 9
    assert (await store.jobs.get(running)).status == "processing"
    assert await store.jobs.dispatchable() == []
    assert await store.admin.empty() == []
