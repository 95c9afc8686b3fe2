"""GET /api/job/{id} tells a poller when to ask again (Retry-After on 200), since every poll is
billed: soon when something is about to change, rarely when nothing will, never once finished."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from storyq.config import Settings
from storyq.queue import Position
from storyq_api.poll_hints import pending_retry_after, processing_retry_after
from storyq_local.stack.redis_server import RedisProcess
from tests.api.conftest import GENERATE_BODY
from tests.support.sql import Db
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]


async def _queue(client: httpx.AsyncClient, user: ApiUser, **body: object) -> dict[str, str]:
    response = await client.post(
        "/api/generate", json={**GENERATE_BODY, **body}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    answer: dict[str, str] = response.json()
    return answer


def _started_seconds_ago(db: Db, job_id: str, seconds: float) -> None:
    db.run(
        "update public.story_jobs set started_at = now() - make_interval(secs => %s) where id = %s",
        (seconds, job_id),
    )


def _retry_after(response: httpx.Response) -> int | None:
    assert response.status_code == 200, response.text
    value = response.headers.get("retry-after")
    return None if value is None else int(value)


async def test_a_job_next_to_a_free_slot_is_asked_about_again_in_two_seconds(
    client: httpx.AsyncClient, make_user: MakeUser, fresh_redis: RedisProcess
) -> None:
    # Given an empty queue and one new job
    user = make_user(credits=1)
    queued = await _queue(client, user)
    # When its owner polls it, Then the API says: ask again in 2 s (it is about to start)
    response = await client.get(f"/api/job/{queued['jobId']}", headers=user.headers)
    assert response.json()["waitTime"]["position"] == 0
    assert _retry_after(response) == 2


async def test_a_job_waiting_for_a_whole_round_is_asked_about_rarely(
    client: httpx.AsyncClient, make_user: MakeUser, settings: Settings, fresh_redis: RedisProcess
) -> None:
    # Given one more job than there are slots, all from one user
    slots = settings.max_active_jobs
    user = make_user(credits=slots + 1)
    jobs = [await _queue(client, user) for _ in range(slots + 1)]
    # When the owner polls the last one, which must wait for a whole generation
    response = await client.get(f"/api/job/{jobs[-1]['jobId']}", headers=user.headers)
    minutes = response.json()["waitTime"]["estimatedMinutes"]
    # Then the API suggests a twentieth of its ETA (27 s at the default 4.5-min mean), ≤ 30 s
    assert _retry_after(response) == min(30, max(3, -(-minutes * 60 // 20)))
    assert 3 <= (_retry_after(response) or 0) <= 30


async def test_a_running_job_is_asked_about_more_often_as_its_end_nears(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Three users: a user on the default plan runs one story at a time.
    users = [make_user(credits=1) for _ in range(3)]
    jobs = [await _queue(client, user, targetWords=1000) for user in users]
    owners = {job["jobId"]: user for job, user in zip(jobs, users, strict=True)}
    just_started, quarter, nearly = jobs
    # Given three running stories of 1000 words: no words yet, a quarter and nine tenths
    # written in 100 s
    db.start(just_started["jobId"])
    db.start(quarter["jobId"], words=250)
    _started_seconds_ago(db, quarter["jobId"], 100)
    db.start(nearly["jobId"], words=900)
    _started_seconds_ago(db, nearly["jobId"], 100)

    async def hint(job: dict[str, str]) -> int | None:
        owner = owners[job["jobId"]]
        return _retry_after(await client.get(f"/api/job/{job['jobId']}", headers=owner.headers))

    # Then: just started, soon (2 s); 300 s left, the ceiling (20 s); 11 s left, half (6 s)
    assert await hint(just_started) == 2
    assert await hint(quarter) == 20
    assert await hint(nearly) == 6


async def test_finished_jobs_carry_no_retry_after(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=3)
    done, failed, cancelled = [await _queue(client, user) for _ in range(3)]
    db.start(done["jobId"])
    db.complete(done["jobId"], "The end.", {"words": 2})
    db.start(failed["jobId"])
    db.fail(failed["jobId"])
    assert (
        await client.delete(f"/api/job/{cancelled['jobId']}", headers=user.headers)
    ).status_code == 200
    for job, status in ((done, "completed"), (failed, "failed"), (cancelled, "cancelled")):
        response = await client.get(f"/api/job/{job['jobId']}", headers=user.headers)
        assert response.json()["status"] == status
        assert _retry_after(response) is None, status


async def test_head_carries_the_same_hint_and_the_story_none(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user, targetWords=1000)
    db.start(queued["jobId"], words=250)
    _started_seconds_ago(db, queued["jobId"], 100)
    head = await client.head(f"/api/job/{queued['jobId']}", headers=user.headers)
    assert head.status_code == 200
    assert head.headers["retry-after"] == "20"
    # The story is read once its job finished; the job is what is polled.
    story = await client.get(f"/api/story/{queued['storyId']}", headers=user.headers)
    assert story.status_code == 200
    assert "retry-after" not in story.headers


def test_the_hint_stays_within_its_bounds_whatever_the_job_says() -> None:
    hints = [
        processing_retry_after(elapsed_seconds=elapsed, words=words, target_words=target)
        for elapsed in (-5.0, 0.0, 1.0, 30.0, 270.0, 3600.0)
        for words in (0, 1, 500, 999, 1000, 5000)
        for target in (None, 0, 1000)
    ]
    assert all(2 <= hint <= 20 for hint in hints)
    # Past the target (a model writing on), polls stay ≤ 10 s apart, not 2 s
    assert processing_retry_after(elapsed_seconds=300, words=1300, target_words=1000) == 10
    in_line = [
        pending_retry_after(
            Position(position=rank, queue_length=rank + 1, active_jobs=5, estimated_minutes=eta),
            max_active=5,
        )
        for rank in (0, 4, 400)
        for eta in (1, 5, 400)
    ]
    assert all(3 <= hint <= 30 for hint in in_line)
    # A retry waiting for its time: asked about when it is due, within 2-30 s
    assert pending_retry_after(None, max_active=5, retry_in_seconds=12.2) == 13
    assert pending_retry_after(None, max_active=5) == 5
