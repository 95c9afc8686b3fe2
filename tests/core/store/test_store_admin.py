"""storyq.store's calls on the whole queue: credits, queue counts (per tier too), clean, retry,
empty, the global cap when an attempt starts, and the idempotency-key purge.

These act on the whole queue (empty cancels every pending job, the cap counts every processing
attempt), so this module runs against a private migrated database and its own Supabase
emulator, not the session's shared ones.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Literal

import psycopg
import pytest
from psycopg import sql

from storyq.clients import async_postgrest
from storyq.config import DEV_JWT_SECRET, Settings
from storyq.store import (
    EnqueuedJob,
    EnqueueRequest,
    Failure,
    InvalidAmount,
    InvalidStatus,
    JobNotRetryable,
    StaleAttempt,
    StartedJob,
    StartRefused,
    Store,
    TierCounts,
    UserNotFound,
)
from storyq_local.emulators.supabase import create_app
from storyq_local.stack.postgres import create_scratch_database, drop_database
from storyq_local.stack.servers import serve_in_thread
from storyq_local.stack.users import ensure_user
from tests.support.sql import Db

FINAL = Failure(code="content_policy", message="refused", retryable=False)
MAX_ACTIVE = 5
LIVE_SECONDS = 60.0


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
        conn.execute(
            "truncate public.story_job_attempts, public.story_jobs, public.stories,"
            " public.idempotency_keys"
        )
    db = async_postgrest(admin_settings)
    yield Store(db)
    await db.aclose()


@pytest.fixture
async def user(store: Store, admin_database: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    ensure_user(admin_database, user_id)
    await store.credits.grant(user_id, 10, reason="welcome")
    return user_id


async def new_users(store: Store, admin_database: str, count: int) -> list[uuid.UUID]:
    """Users on the default plan, each with credits: one running job apiece, as several users'
    jobs fill the global cap (a default-plan user runs one at a time)."""
    users = [uuid.uuid4() for _ in range(count)]
    for user_id in users:
        ensure_user(admin_database, user_id)
        await store.credits.grant(user_id, 10)
    return users


def request(user: uuid.UUID, *, key: str | None = None) -> EnqueueRequest:
    return EnqueueRequest(
        user_id=user,
        prompt="a meadow",
        target_words=500,
        cost=1,
        max_attempts=3,
        idempotency_key=key,
        request_hash="hash:a meadow" if key else None,
    )


async def enqueue(store: Store, user: uuid.UUID) -> uuid.UUID:
    return (await store.jobs.enqueue(request(user))).job_id


async def fence(store: Store, job_id: uuid.UUID) -> int:
    """The token of the job's next (pending) or running attempt, as Postgres has it."""
    current = (await store.jobs.get(job_id)).fence
    assert current is not None
    return current


async def try_start(
    store: Store, job_id: uuid.UUID, *, max_active: int = MAX_ACTIVE
) -> StartedJob | StartRefused:
    """A worker's start of the job's current attempt, with the production cap by default."""
    return await store.jobs.start(
        job_id, await fence(store, job_id), max_active=max_active, live_seconds=LIVE_SECONDS
    )


async def start(store: Store, job_id: uuid.UUID, *, max_active: int = MAX_ACTIVE) -> int:
    """Start the job's current attempt, which must start; its fence."""
    started = await try_start(store, job_id, max_active=max_active)
    assert isinstance(started, StartedJob), started
    return started.fence


def shift(
    database_url: str,
    job_id: uuid.UUID,
    column: Literal["started_at", "finished_at", "heartbeat_at"],
    seconds: int,
) -> None:
    """Move one of a job's timestamps into the past (time travel for age-based rules)."""
    statement = sql.SQL(
        "update public.story_jobs set {column} = {column} - make_interval(secs => %s) where id = %s"
    ).format(column=sql.Identifier(column))
    with psycopg.connect(database_url) as conn:
        conn.execute(statement, (seconds, job_id))


def age_keys(database_url: str, user: uuid.UUID, key: str, seconds: int) -> None:
    """Make the user's idempotency key `seconds` older."""
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update public.idempotency_keys set created_at = created_at - make_interval(secs => %s)"
            " where user_id = %s and key = %s",
            (seconds, user, key),
        )


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
    # one of a plus user, and a running one enqueued before tiers (six users': a user on the
    # default plan runs one job at a time)
    owners = [user, *await new_users(store, admin_database, 5)]
    Db(admin_database).set_tier(owners[4], "plus")
    done, failed, cancelled, running, waiting, untiered = [
        await enqueue(store, owner) for owner in owners
    ]
    fences = {job_id: await start(store, job_id) for job_id in (done, failed, running, untiered)}
    await store.jobs.complete(done, fence=fences[done], content="the end")
    shift(admin_database, done, "started_at", 240)
    await store.jobs.fail(failed, fence=fences[failed], failure=FINAL)
    await store.jobs.cancel(cancelled)
    Db(admin_database).run("update public.story_jobs set tier = null where id = %s", (untiered,))

    counts = await store.admin.counts()

    waiting_job = await store.jobs.get(waiting)
    assert (counts.pending, counts.processing, counts.completed) == (1, 2, 1)
    assert (counts.failed, counts.cancelled) == (1, 1)
    assert counts.avg_generation_seconds == pytest.approx(240, abs=1)
    assert counts.oldest_pending_at == waiting_job.queued_at
    # and waiting and running per tier, by name
    assert counts.by_tier == [
        TierCounts(tier="(none)", pending=0, processing=1),
        TierCounts(tier="free", pending=0, processing=1),
        TierCounts(tier="plus", pending=1, processing=0),
    ]


async def test_clean_removes_old_finished_jobs_but_keeps_stories(
    store: Store, user: uuid.UUID, admin_database: str
) -> None:
    # Given a job completed two hours ago and one completed just now
    old, recent = await enqueue(store, user), await enqueue(store, user)
    for job_id in (old, recent):
        await store.jobs.complete(job_id, fence=await start(store, job_id), content="the end")
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


async def test_cancelled_jobs_can_be_cleaned_and_their_keys_still_replay(
    store: Store, user: uuid.UUID, admin_database: str
) -> None:
    # Given a job enqueued with an idempotency key, cancelled two hours ago, and a job that
    # completed with a key of its own
    cancelled = await store.jobs.enqueue(request(user, key="cancelled-click"))
    await store.jobs.cancel(cancelled.job_id, user_id=user)
    shift(admin_database, cancelled.job_id, "finished_at", 7200)
    done = await store.jobs.enqueue(request(user, key="done-click"))
    await store.jobs.complete(done.job_id, fence=await start(store, done.job_id), content="fin")
    shift(admin_database, done.job_id, "finished_at", 7200)
    balance = await store.credits.balance(user)

    # When cancelled and completed rows older than an hour are cleaned
    removed = [
        await store.admin.clean("cancelled", older_than_seconds=3600),
        await store.admin.clean("completed", older_than_seconds=3600),
    ]

    # Then the rows went, and each key still answers with its job's ids and how it ended,
    # charging nothing again
    assert removed == [1, 1]
    replays: list[EnqueuedJob] = [
        await store.jobs.enqueue(request(user, key=key))
        for key in ("cancelled-click", "done-click")
    ]
    assert [(r.job_id, r.story_id) for r in replays] == [
        (cancelled.job_id, cancelled.story_id),
        (done.job_id, done.story_id),
    ]
    assert [(r.status, r.replayed, r.fence) for r in replays] == [
        ("cancelled", True, None),
        ("completed", True, None),
    ]
    assert await store.credits.balance(user) == balance


async def test_retrying_a_failed_job_charges_nothing_and_never_refunds_twice(
    store: Store, user: uuid.UUID
) -> None:
    # Given a job that failed for good and was refunded (balance back to 10)
    job_id = await enqueue(store, user)
    before = await start(store, job_id)
    await store.jobs.fail(job_id, fence=before, failure=FINAL)
    assert await store.credits.balance(user) == 10

    # When an admin retries it
    retried = await store.admin.retry_failed(job_id)

    # Then it is pending with fresh attempts, for free, under a new fence (never reset)
    assert (retried.status, retried.attempts, retried.error_code) == ("pending", 0, None)
    assert retried.fence is not None
    assert retried.fence > before
    assert await store.credits.balance(user) == 10
    # And a worker left over from before the retry can neither start nor finish it
    stale = await store.jobs.start(job_id, before, max_active=MAX_ACTIVE, live_seconds=LIVE_SECONDS)
    assert isinstance(stale, StartRefused)
    assert stale.reason == "stale"
    assert (await start(store, job_id)) == retried.fence
    with pytest.raises(StaleAttempt):
        await store.jobs.complete(job_id, fence=before, content="from before the retry")
    # And failing again refunds nothing more
    outcome = await store.jobs.fail(job_id, fence=retried.fence, failure=FINAL)
    assert (outcome.status, outcome.refunded) == ("failed", True)
    assert await store.credits.balance(user) == 10
    # Only failed jobs can be retried
    pending = await enqueue(store, user)
    with pytest.raises(JobNotRetryable):
        await store.admin.retry_failed(pending)


async def test_empty_cancels_and_refunds_every_waiting_job(store: Store, user: uuid.UUID) -> None:
    # Given three waiting jobs (one of them a delayed retry) and a running one
    waiting = [await enqueue(store, user) for _ in range(3)]
    await store.jobs.fail(
        waiting[2],
        fence=await start(store, waiting[2]),
        failure=Failure(code="busy", message="later", retryable=True, retry_delay_seconds=600),
    )
    running = await enqueue(store, user)
    await start(store, running)
    assert await store.credits.balance(user) == 6

    # When the queue is emptied
    cancelled = await store.admin.empty()

    # Then the waiting ones are cancelled and refunded; the running one is untouched
    assert sorted(cancelled) == sorted(waiting)
    assert await store.credits.balance(user) == 9
    assert (await store.jobs.get(running)).status == "processing"
    assert (await store.jobs.dispatch_snapshot()).pending == []
    assert await store.admin.empty() == []


# The global cap, checked when an attempt starts -------------------------------------------


async def test_no_attempt_starts_while_the_cap_is_reached(
    store: Store, user: uuid.UUID, admin_database: str
) -> None:
    # Given five attempts running (MAX_ACTIVE_JOBS), five users' each, and one more job waiting
    others = await new_users(store, admin_database, MAX_ACTIVE)
    running = [await enqueue(store, other) for other in others]
    fences = [await start(store, job_id) for job_id in running]
    waiting = await enqueue(store, user)
    waiting_fence = await fence(store, waiting)

    # When a worker (its Redis lease lost or wrong) starts the sixth
    sixth = await try_start(store, waiting)

    # Then Postgres refuses, and nothing changed: the job waits under the same fence
    assert isinstance(sixth, StartRefused)
    assert (sixth.reason, sixth.status, sixth.fence, sixth.attempts) == (
        "capacity",
        "pending",
        waiting_fence,
        0,
    )
    assert (await store.admin.counts()).processing == MAX_ACTIVE
    # and once a generation finishes, the same claim starts
    await store.jobs.complete(running[0], fence=fences[0], content="the end")
    assert await start(store, waiting) == waiting_fence


async def test_concurrent_starts_never_exceed_the_cap(store: Store, admin_database: str) -> None:
    # Given twenty waiting jobs of twenty users
    jobs = [await enqueue(store, user) for user in await new_users(store, admin_database, 20)]
    fences = [await fence(store, job_id) for job_id in jobs]

    # When twenty workers start them all at once
    answers = await asyncio.gather(
        *(
            store.jobs.start(job_id, job_fence, max_active=MAX_ACTIVE, live_seconds=LIVE_SECONDS)
            for job_id, job_fence in zip(jobs, fences, strict=True)
        )
    )

    # Then exactly five started and the others were refused for capacity
    assert sum(isinstance(a, StartedJob) for a in answers) == MAX_ACTIVE
    reasons = {a.reason for a in answers if isinstance(a, StartRefused)}
    assert reasons == {"capacity"}
    assert (await store.admin.counts()).processing == MAX_ACTIVE


async def test_a_dead_attempt_holds_no_slot(
    store: Store, user: uuid.UUID, admin_database: str
) -> None:
    # Given a cap of one, held by an attempt whose worker went silent ten minutes ago
    dead = await enqueue(store, user)
    dead_fence = await start(store, dead, max_active=1)
    shift(admin_database, dead, "heartbeat_at", 600)
    waiting = await enqueue(store, user)

    # When another job starts (live means a heartbeat within LIVE_SECONDS)
    await start(store, waiting, max_active=1)

    # Then the dead attempt was counted as lost first: its job waits for another attempt under
    # a new fence, and its worker, should it wake, is told to stop
    lost = await store.jobs.get(dead)
    assert (lost.status, lost.attempts, lost.error_code) == ("pending", 1, "worker_lost")
    assert lost.fence is not None
    assert lost.fence > dead_fence
    assert await store.jobs.heartbeat(dead, dead_fence) is False


# Idempotency keys ---------------------------------------------------------------------------


async def test_expired_idempotency_keys_are_purged_and_free_again(
    store: Store, user: uuid.UUID, admin_database: str
) -> None:
    # Given a key used two days ago and one used just now
    old = await store.jobs.enqueue(request(user, key="old-click"))
    age_keys(admin_database, user, "old-click", 2 * 86400)
    fresh = await store.jobs.enqueue(request(user, key="fresh-click"))

    # When the sweep purges keys older than a day
    purged = await store.jobs.purge_idempotency_keys(ttl_seconds=86400)

    # Then only the old one went: using it again makes a new job, the fresh one still replays
    assert purged == 1
    again = await store.jobs.enqueue(request(user, key="old-click"))
    assert (again.replayed, again.job_id == old.job_id) == (False, False)
    replay = await store.jobs.enqueue(request(user, key="fresh-click"))
    assert (replay.replayed, replay.job_id) == (True, fresh.job_id)
    assert await store.jobs.purge_idempotency_keys(ttl_seconds=86400) == 0
