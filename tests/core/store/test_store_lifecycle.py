"""storyq.store's job state machine through PostgREST: fencing, retries, refunds, cancel, reads.

The worker's view (start, heartbeat, complete, fail, release, requeue, the dispatch snapshot)
and the API's (get, list, cancel, story), against the real SQL functions behind the Supabase
emulator. Every attempt is fenced by the token Postgres issued when its job last became
startable; the global cap at start is tested where the whole queue is private
(test_store_admin).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from storyq.clients import async_postgrest
from storyq.config import Settings
from storyq.store import (
    EnqueuedJob,
    EnqueueRequest,
    Failure,
    Heartbeat,
    JobCursor,
    JobNotCancellable,
    JobNotFound,
    JobResult,
    JobState,
    StaleAttempt,
    StartedJob,
    StartRefused,
    Store,
    StoryNotFound,
)
from storyq_local.stack.users import ensure_user

RETRY = Failure(code="upstream_timeout", message="the model took too long", retryable=True)
# The session's database is shared with other modules' jobs: starts here use a cap no test
# reaches and count an attempt as live for an hour, so they never act on those jobs.
NO_CAP = 1_000_000
LIVE_SECONDS = 3600.0

RESULT = JobResult(generation_time=12.5, quality="high", words=3, generator="template")

# How the sweeper asks about an attempt that went silent (a one-minute lease, no retry delay).
SILENT_FOR_A_LEASE: dict[str, Any] = {
    "live_seconds": 60,
    "reason": "the worker stopped sending heartbeats",
    "retry_delay_seconds": 0.0,
}


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


async def enqueue(
    store: Store, user: uuid.UUID, prompt: str = "a comet", *, max_attempts: int = 3
) -> EnqueuedJob:
    job = await store.jobs.enqueue(
        EnqueueRequest(
            user_id=user, prompt=prompt, target_words=600, cost=1, max_attempts=max_attempts
        )
    )
    assert job.fence is not None
    return job


async def try_start(store: Store, job_id: uuid.UUID, fence: int) -> StartedJob | StartRefused:
    return await store.jobs.start(job_id, fence, max_active=NO_CAP, live_seconds=LIVE_SECONDS)


async def start(store: Store, job_id: uuid.UUID, fence: int) -> StartedJob:
    """Start the attempt `fence`, which must start."""
    started = await try_start(store, job_id, fence)
    assert isinstance(started, StartedJob), started
    return started


async def refused(store: Store, job_id: uuid.UUID, fence: int) -> StartRefused:
    """Start the attempt `fence`, which must be refused."""
    answer = await try_start(store, job_id, fence)
    assert isinstance(answer, StartRefused), answer
    return answer


def fence_of(job: EnqueuedJob | JobState) -> int:
    """The token of the job's next (pending) or running attempt, which Postgres must give."""
    assert job.fence is not None, job
    return job.fence


def refunds(database_url: str, job_id: uuid.UUID) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from public.credit_ledger where job_id = %s and kind = 'refund'",
            (job_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def silence(database_url: str, job_id: uuid.UUID, *, minutes: int) -> None:
    """The attempt's worker last sent a heartbeat `minutes` ago."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update public.story_jobs set heartbeat_at = now() - make_interval(mins => %s)"
            " where id = %s",
            (minutes, job_id),
        )


async def test_a_stale_attempt_can_neither_complete_nor_fail(store: Store, user: uuid.UUID) -> None:
    # Given a job whose first attempt failed and whose second attempt is running
    job = await enqueue(store, user)
    first = fence_of(job)
    await start(store, job.job_id, first)
    retried = await store.jobs.fail(job.job_id, fence=first, failure=RETRY)
    second = fence_of(retried)
    await start(store, job.job_id, second)

    # When the first attempt's worker wakes up and reports
    with pytest.raises(StaleAttempt):
        await store.jobs.complete(job.job_id, fence=first, content="a late story")
    with pytest.raises(StaleAttempt):
        await store.jobs.fail(job.job_id, fence=first, failure=RETRY)
    with pytest.raises(StaleAttempt):
        await store.jobs.release(job.job_id, fence=first)
    assert await store.jobs.heartbeat(job.job_id, first) is False
    # Nor may it start again, nor a duplicate dispatch start the running attempt twice
    assert (await refused(store, job.job_id, first)).reason == "stale"
    duplicate = await refused(store, job.job_id, second)
    assert (duplicate.reason, duplicate.status, duplicate.fence) == (
        "running",
        "processing",
        second,
    )

    # Then the second attempt still owns the job and its result is the one kept
    current = await store.jobs.get(job.job_id)
    assert (current.status, current.attempts, current.fence) == ("processing", 2, second)
    assert await store.jobs.heartbeat(job.job_id, second, words=250) is True
    assert (await store.jobs.get(job.job_id)).progress_words == 250
    # and in a batch of beats only its beat counts: the stale one is answered "not yours"
    stale_and_live = [Heartbeat(job.job_id, first, 999), Heartbeat(job.job_id, second, 260)]
    assert set(await store.jobs.heartbeat_many(stale_and_live)) == {(job.job_id, second)}
    assert await store.jobs.heartbeat_many([Heartbeat(job.job_id, first, 999)]) == {}
    assert (await store.jobs.get(job.job_id)).progress_words == 260
    done = await store.jobs.complete(
        job.job_id, fence=second, content="the real story", title="Comet", result=RESULT
    )
    story = await store.stories.get(done.story_id, user_id=user)
    assert (story.status, story.content, story.words, story.title) == (
        "ready",
        "the real story",
        3,
        "Comet",
    )
    assert (await store.jobs.get(job.job_id)).result == RESULT


async def test_every_return_to_pending_issues_a_new_larger_fence(
    store: Store, user: uuid.UUID
) -> None:
    # Given a job queued under its first fence
    job = await enqueue(store, user)
    fences = [fence_of(job)]

    # When its attempt is released by a worker shutting down, then one fails and is retried
    started = await start(store, job.job_id, fences[-1])
    assert (started.fence, started.attempt, started.max_attempts) == (fences[-1], 1, 3)
    released = await store.jobs.release(job.job_id, fence=fences[-1])
    fences.append(fence_of(released))
    again = await start(store, job.job_id, fences[-1])
    failed = await store.jobs.fail(job.job_id, fence=fences[-1], failure=RETRY)
    fences.append(fence_of(failed))

    # Then each return to pending drew a new token that only grows, and the job carries it
    assert fences == sorted(set(fences))
    assert (released.status, released.attempts) == ("pending", 0)  # a release is not counted
    assert again.attempt == 1
    assert (failed.status, failed.attempts, failed.will_retry) == ("pending", 1, True)
    assert (await store.jobs.get(job.job_id)).fence == fences[-1]
    # and only the newest one starts the next attempt
    for old in fences[:-1]:
        assert (await refused(store, job.job_id, old)).reason == "stale"
    assert (await start(store, job.job_id, fences[-1])).attempt == 2


async def test_three_failures_fail_the_job_and_refund_once(
    store: Store, user: uuid.UUID, database_url: str
) -> None:
    # Given a job (balance 10 -> 9)
    job = await enqueue(store, user)
    assert await store.credits.balance(user) == 9

    # When all three attempts fail with a retryable error
    fence = fence_of(job)
    outcomes = []
    for attempt in (1, 2, 3):
        started = await start(store, job.job_id, fence)
        assert started.attempt == attempt
        outcome = await store.jobs.fail(job.job_id, fence=fence, failure=RETRY)
        outcomes.append(outcome)
        fence = fence_of(outcome)

    # Then the first two are retried and the third fails the job, refunded
    assert [o.will_retry for o in outcomes] == [True, True, False]
    assert [o.refunded for o in outcomes] == [False, False, True]
    assert outcomes[2].next_attempt_at is None
    failed = await store.jobs.get(job.job_id, user_id=user)
    assert (failed.status, failed.error_code, failed.refunded) == (
        "failed",
        "upstream_timeout",
        True,
    )
    assert (await store.stories.get(failed.story_id)).status == "failed"
    assert await store.credits.balance(user) == 10
    assert refunds(database_url, job.job_id) == 1
    # And nothing can start it again
    assert (await refused(store, job.job_id, fence)).reason == "finished"


async def test_a_retry_is_due_after_its_delay(store: Store, user: uuid.UUID) -> None:
    job = await enqueue(store, user)
    await start(store, job.job_id, fence_of(job))
    delayed = Failure(code="rate_limited", message="429", retryable=True, retry_delay_seconds=90)

    outcome = await store.jobs.fail(job.job_id, fence=fence_of(job), failure=delayed)

    current = await store.jobs.get(job.job_id)
    assert outcome.next_attempt_at is not None
    assert outcome.next_attempt_at - current.updated_at == timedelta(seconds=90)
    pending = {p.job_id: p for p in (await store.jobs.dispatch_snapshot()).pending}
    assert pending[job.job_id].next_attempt_at == outcome.next_attempt_at
    assert (pending[job.job_id].attempts, pending[job.job_id].fence) == (1, outcome.fence)


async def test_the_dispatch_snapshot_holds_each_job_once_with_its_fence(
    store: Store, user: uuid.UUID
) -> None:
    # Given a running job and a waiting one
    running, waiting = await enqueue(store, user, "running"), await enqueue(store, user, "waiting")
    await start(store, running.job_id, fence_of(running))

    # When the sweep reads what Redis is rebuilt from
    snapshot = await store.jobs.dispatch_snapshot()

    # Then the running one is among the running attempts and the waiting one among the
    # pending jobs, each under its current fence
    runs = {r.job_id: r for r in snapshot.running}
    pending = {p.job_id: p for p in snapshot.pending}
    assert (runs[running.job_id].fence, runs[running.job_id].attempt) == (running.fence, 1)
    assert runs[running.job_id].user_id == user
    assert (pending[waiting.job_id].fence, pending[waiting.job_id].attempts) == (waiting.fence, 0)
    assert running.job_id not in pending
    assert waiting.job_id not in runs


async def test_a_stalled_attempt_is_found_and_requeued(
    store: Store, user: uuid.UUID, database_url: str
) -> None:
    # Given a running attempt whose worker went silent ten minutes ago
    job = await enqueue(store, user)
    fence = fence_of(job)
    await start(store, job.job_id, fence)
    silence(database_url, job.job_id, minutes=10)

    # When the sweeper looks for attempts silent for a minute
    found = await store.jobs.stalled(stalled_for_seconds=60)
    stalled = [s for s in found if s.job_id == job.job_id]

    # Then it finds it and Postgres counts it as a lost attempt: pending under a new fence
    assert [(s.fence, s.attempt, s.user_id) for s in stalled] == [(fence, 1, user)]
    lost = await store.jobs.requeue_stalled(job.job_id, fence=fence, **SILENT_FOR_A_LEASE)
    assert (lost.outcome, lost.status, lost.attempts) == ("requeued", "pending", 1)
    assert fence_of(lost) > fence
    assert (await store.jobs.get(job.job_id)).error_code == "worker_lost"
    # and a second sweeper asking about the same attempt learns it is superseded
    again = await store.jobs.requeue_stalled(job.job_id, fence=fence, **SILENT_FOR_A_LEASE)
    assert (again.outcome, again.status, again.fence) == ("superseded", "pending", lost.fence)


async def test_a_live_attempt_is_never_taken_from_its_worker(store: Store, user: uuid.UUID) -> None:
    # Given a running attempt whose worker heartbeats (Redis may have lost its lease)
    job = await enqueue(store, user)
    fence = fence_of(job)
    await start(store, job.job_id, fence)
    assert await store.jobs.heartbeat(job.job_id, fence, words=10)

    # When a sweeper asks about it
    lost = await store.jobs.requeue_stalled(job.job_id, fence=fence, **SILENT_FOR_A_LEASE)

    # Then Postgres says it is live, and nothing changed
    assert (lost.outcome, lost.status, lost.fence, lost.attempts) == (
        "live",
        "processing",
        fence,
        1,
    )
    assert await store.jobs.heartbeat(job.job_id, fence) is True


async def test_what_the_sweeper_learns_about_other_lost_attempts(
    store: Store, user: uuid.UUID, database_url: str
) -> None:
    # Given a claimed job that never started, a silent last attempt, and a cleaned-away job
    unstarted = await enqueue(store, user, "never started")
    last = await enqueue(store, user, "last chance", max_attempts=1)
    await start(store, last.job_id, fence_of(last))
    silence(database_url, last.job_id, minutes=10)

    # When the sweeper asks about each attempt
    never = await store.jobs.requeue_stalled(
        unstarted.job_id, fence=fence_of(unstarted), **SILENT_FOR_A_LEASE
    )
    dead = await store.jobs.requeue_stalled(last.job_id, fence=fence_of(last), **SILENT_FOR_A_LEASE)
    gone = await store.jobs.requeue_stalled(uuid.uuid4(), fence=1, **SILENT_FOR_A_LEASE)

    # Then the unstarted one waits as it was, the last attempt fails the job (refunded), and the
    # missing one is gone
    assert (never.outcome, never.status, never.fence) == ("unstarted", "pending", unstarted.fence)
    assert (dead.outcome, dead.status, dead.refunded) == ("failed", "failed", True)
    assert refunds(database_url, last.job_id) == 1
    assert (gone.outcome, gone.status) == ("gone", None)


async def test_cancel_refunds_a_pending_job_and_requests_a_running_ones_end(
    store: Store, user: uuid.UUID
) -> None:
    # Given one pending and one processing job
    pending = await enqueue(store, user, "pending one")
    running = await enqueue(store, user, "running one")
    await start(store, running.job_id, fence_of(running))
    assert await store.credits.balance(user) == 8

    # When the user cancels both (the running one twice)
    cancelled = await store.jobs.cancel(pending.job_id, user_id=user)
    requested = await store.jobs.cancel(running.job_id, user_id=user)
    again = await store.jobs.cancel(running.job_id, user_id=user)

    # Then the pending one is cancelled and refunded; the running one goes on, its cancel
    # requested (its worker ends it), and nothing more is refunded
    assert (cancelled.status, cancelled.refunded, cancelled.cancel_reason) == (
        "cancelled",
        True,
        "user",
    )
    assert (requested.status, requested.cancel_requested, requested.refunded) == (
        "processing",
        True,
        False,
    )
    assert again.cancel_requested_at == requested.cancel_requested_at
    assert await store.credits.balance(user) == 9
    assert (await store.stories.get(cancelled.story_id)).status == "cancelled"
    too_late = await refused(store, pending.job_id, fence_of(pending))
    assert (too_late.reason, too_late.status) == ("finished", "cancelled")


async def test_a_finished_job_cannot_be_cancelled(store: Store, user: uuid.UUID) -> None:
    # Given a completed job
    done = await enqueue(store, user, "done one")
    await start(store, done.job_id, fence_of(done))
    await store.jobs.complete(done.job_id, fence=fence_of(done), content="The end.")

    # When its user cancels it, Then 409
    with pytest.raises(JobNotCancellable) as not_cancellable:
        await store.jobs.cancel(done.job_id, user_id=user)
    assert not_cancellable.value.status == 409


async def test_another_users_job_and_story_are_not_found(
    store: Store, user: uuid.UUID, database_url: str
) -> None:
    # Given a job of this user, and a stranger
    job_id = (await enqueue(store, user)).job_id
    job = await store.jobs.get(job_id, user_id=user)
    stranger = uuid.uuid4()
    ensure_user(database_url, stranger)

    # Then the stranger sees 404s, exactly as for jobs that do not exist
    for call in (
        store.jobs.get(job_id, user_id=stranger),
        store.jobs.cancel(job_id, user_id=stranger),
        store.jobs.get(uuid.uuid4()),
        try_start(store, uuid.uuid4(), 1),
    ):
        with pytest.raises(JobNotFound) as missing:
            await call
        assert missing.value.status == 404
    with pytest.raises(StoryNotFound):
        await store.stories.get(job.story_id, user_id=stranger)
    assert (await store.jobs.get(job_id)).status == "pending"


async def test_the_story_exists_from_enqueue_on(store: Store, user: uuid.UUID) -> None:
    job_id = (await enqueue(store, user, "a quiet harbour")).job_id

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
    await start(store, created[0].job_id, fence_of(created[0]))

    # When the user pages through them two at a time
    pages = [await store.jobs.list_for_user(user, limit=2)]
    while (cursor := pages[-1].next_cursor) is not None:
        token = cursor.encode()  # what travels through the API as nextCursor
        pages.append(await store.jobs.list_for_user(user, limit=2, cursor=JobCursor.decode(token)))

    # Then they see every job once, newest first, in three pages
    seen = [job.job_id for page in pages for job in page.jobs]
    assert seen == [job.job_id for job in reversed(created)]
    assert [len(p.jobs) for p in pages] == [2, 2, 1]
    processing = await store.jobs.list_for_user(user, status="processing")
    assert [j.job_id for j in processing.jobs] == [created[0].job_id]
    with pytest.raises(ValueError, match="cursor"):
        JobCursor.decode("not a cursor")


def test_a_cursors_instant_comes_back_in_utc_and_needs_an_offset() -> None:
    # Given cursors as a client could forge them: offsets Postgres refuses, or none at all
    job_id = uuid.uuid4()

    def token(instant: str) -> str:
        return base64.urlsafe_b64encode(f"{instant}|{job_id}".encode()).decode().rstrip("=")

    # When they are decoded, Then the instant is the same one, in UTC, or the cursor is refused
    far_east = JobCursor.decode(token("2026-12-01T23:30:00+23:30"))
    assert far_east.created_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert far_east.created_at.utcoffset() == timedelta(0)
    for bad in ("2026-12-01T00:00:00", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValueError, match="cursor"):
            JobCursor.decode(token(bad))
