"""storyq.store and plan tiers: what enqueue, start, the dispatch snapshot and an admin retry say
about a user's plan (`plans`, chosen by app_metadata.tier), parsed into the store's models.

Against the real SQL functions behind the Supabase emulator, on the session's shared database:
starts use a global cap no test reaches, so only the per-user cap is in play. The counts per
tier are tested where the queue is private (test_store_admin).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from storyq.clients import async_postgrest
from storyq.config import Settings
from storyq.store import (
    EnqueuedJob,
    EnqueueRequest,
    Failure,
    StartedJob,
    StartRefused,
    Store,
)
from storyq_local.stack.users import ensure_user
from tests.support.sql import Db

NO_CAP = 1_000_000
LIVE_SECONDS = 3600.0
FINAL = Failure(code="content_policy", message="refused", retryable=False)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    db = async_postgrest(settings)
    yield Store(db)
    await db.aclose()


async def signed_up(store: Store, database_url: str, tier: str | None = None) -> uuid.UUID:
    """A new user with credits, on the plan `tier` names (None: no tier of their own)."""
    user_id = uuid.uuid4()
    ensure_user(database_url, user_id)
    if tier is not None:
        Db(database_url).set_tier(user_id, tier)
    await store.credits.grant(user_id, 20)
    return user_id


async def enqueue(store: Store, user: uuid.UUID, *, key: str | None = None) -> EnqueuedJob:
    return await store.jobs.enqueue(
        EnqueueRequest(
            user_id=user,
            prompt="a harbour at dusk",
            target_words=500,
            cost=1,
            max_attempts=3,
            idempotency_key=key,
            request_hash="hash" if key else None,
        )
    )


async def try_start(store: Store, job: EnqueuedJob) -> StartedJob | StartRefused:
    assert job.fence is not None
    return await store.jobs.start(
        job.job_id, job.fence, max_active=NO_CAP, live_seconds=LIVE_SECONDS
    )


def plan_of(job: EnqueuedJob) -> tuple[str | None, float, int, int | None]:
    return (job.tier, job.weight, job.priority, job.max_active_per_user)


async def test_enqueue_answers_with_the_users_plan(store: Store, database_url: str) -> None:
    # Given a user on plus and one without a tier
    plus, tierless = (
        await signed_up(store, database_url, "plus"),
        await signed_up(store, database_url),
    )

    # When each enqueues (plus twice with one key)
    first = await enqueue(store, plus, key="click-1")
    replay = await enqueue(store, plus, key="click-1")
    default = await enqueue(store, tierless)

    # Then each answer names the plan: its tier, fair-share weight, priority and running cap
    # (none in the seeded plans)
    assert plan_of(first) == ("plus", 2.0, 1, None)
    assert (replay.replayed, replay.job_id, plan_of(replay)) == (True, first.job_id, plan_of(first))
    assert plan_of(default) == ("free", 1.0, 0, None)
    # and the job keeps its tier and priority
    job = await store.jobs.get(first.job_id)
    assert (job.tier, job.priority) == ("plus", 1)


async def test_the_snapshot_and_an_admin_retry_carry_the_users_weight_and_cap(
    store: Store, database_url: str
) -> None:
    # Given a waiting job of a pro user, and a failed one of a user without a tier
    since = datetime.now(UTC)
    pro_job = await enqueue(store, await signed_up(store, database_url, "pro"))
    failed = await enqueue(store, await signed_up(store, database_url))
    started = await try_start(store, failed)
    assert isinstance(started, StartedJob)
    await store.jobs.fail(failed.job_id, fence=started.fence, failure=FINAL)

    # When the sweep reads the recent pending jobs, and an admin retries the failed one
    recent = (datetime.now(UTC) - since).total_seconds() + 60
    snapshot = await store.jobs.dispatch_snapshot(recent_seconds=recent, limit=10_000)
    retried = await store.admin.retry_failed(failed.job_id)

    # Then the snapshot gives the pro job its plan's weight and cap, and the retried job comes
    # back under a new fence with the default plan's
    pending = {p.job_id: p for p in snapshot.pending}
    pro = pending[pro_job.job_id]
    assert (pro.weight, pro.max_active_per_user, pro.priority) == (4.0, None, 2)
    assert (retried.status, retried.tier, retried.weight, retried.max_active_per_user) == (
        "pending",
        "free",
        1.0,
        None,
    )
    assert retried.fence > started.fence


def test_answers_from_before_tiers_read_as_a_user_without_a_plan() -> None:
    # Given an enqueue answer without the plan's keys (a database before tiers)
    answer = {
        "job_id": str(uuid.uuid4()),
        "story_id": str(uuid.uuid4()),
        "status": "pending",
        "attempts": 0,
        "fence": 7,
        "created_at": "2026-12-01T00:00:00+00:00",
        "replayed": False,
        "balance": 3,
    }

    # When it is read, Then the job is of no tier, weight 1, priority 0, only the global cap
    assert plan_of(EnqueuedJob.model_validate(answer)) == (None, 1.0, 0, None)
