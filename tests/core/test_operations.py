"""The job operations the API and the CLI share (storyq.operations), on the session's stack."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from storyq.clients import async_postgrest, async_redis
from storyq.config import Settings
from storyq.kick import WorkerKicker
from storyq.operations import JobOperations, StoryRequest
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.servers import free_port
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]


def test_a_story_request_hashes_as_its_canonical_json() -> None:
    # Idempotency keys stored by earlier releases were bound to this exact form: sorted keys,
    # the API's field names, no spaces, UTF-8 as is.
    prompt = "Ukrainian: \u0407\u0436\u0430\u043a"  # Їжак, as it is: not ASCII-escaped
    story = StoryRequest(prompt=prompt, genre="fable")
    canonical = (
        '{"genre":"fable","language":"en","prompt":"PROMPT","targetWords":1200,"title":null}'
    )
    canonical = canonical.replace("PROMPT", prompt)
    assert story.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()
    assert StoryRequest(prompt=prompt, genre="fable").fingerprint() == story.fingerprint()
    assert StoryRequest(prompt=prompt).fingerprint() != story.fingerprint()


@pytest.fixture
async def without_redis(settings: Settings) -> AsyncIterator[tuple[JobOperations, list[str]]]:
    """Operations whose Redis is a port where nothing listens; what they reported degraded."""
    dead = settings.model_copy(update={"upstash_redis_rest_url": f"http://127.0.0.1:{free_port()}"})
    db, redis = async_postgrest(settings), async_redis(dead)
    degraded: list[str] = []
    operations = JobOperations(
        store=Store(db),
        dispatcher=Dispatcher(redis, max_active=dead.max_active_jobs),
        kicker=WorkerKicker(None, timeout=1),
        settings=dead,
        on_degraded=degraded.append,
    )
    yield operations, degraded
    await db.aclose()
    await redis.close()


async def test_a_redis_failure_after_the_commit_costs_the_position_not_the_job(
    without_redis: tuple[JobOperations, list[str]], make_user: MakeUser
) -> None:
    # Given Redis unreachable and a user with a credit
    operations, degraded = without_redis
    user = make_user(credits=1)

    # When a story is submitted, then cancelled
    submitted = await operations.submit(StoryRequest(prompt="A quiet storm"), user_id=user.id)
    cancelled = await operations.cancel(submitted.job.job_id, user_id=user.id)

    # Then the job was saved and debited without a place in the queue, the cancel refunded it,
    # and each Redis step that failed was reported
    assert submitted.job.status == "pending"
    assert submitted.job.balance == 0
    assert submitted.position is None
    assert cancelled.status == "cancelled"
    assert cancelled.refunded
    assert degraded == ["enqueue", "remove"]


async def test_looking_up_another_users_job_is_not_found(
    without_redis: tuple[JobOperations, list[str]], make_user: MakeUser
) -> None:
    from storyq.store import JobNotFound

    operations, _ = without_redis
    owner = make_user(credits=1)
    submitted = await operations.submit(StoryRequest(prompt="Mine"), user_id=owner.id)
    with pytest.raises(JobNotFound):
        await operations.look_up(submitted.job.job_id, user_id=uuid.uuid4())
