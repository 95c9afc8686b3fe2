"""POST /api/generate: the 202 contract, validation, limits, idempotency and degraded modes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from storyq.config import Settings
from storyq_api.app import MAX_BODY_BYTES
from storyq_local.stack.redis_server import RedisProcess
from tests.api.conftest import GENERATE_BODY, assert_problem, client_for, dead_url
from tests.support.sql import Db
from tests.support.users import ApiUser, bearer, token_for

MakeUser = Callable[..., ApiUser]


async def test_generate_debits_saves_the_story_and_answers_202(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db, fresh_redis: RedisProcess
) -> None:
    # Given a user with two credits and an empty queue
    user = make_user(credits=2)
    # When they ask for a story
    response = await client.post(
        "/api/generate",
        json={**GENERATE_BODY, "title": "The Door", "genre": "fantasy", "targetWords": 800},
        headers=user.headers,
    )
    # Then it is queued at once, first in line, and one credit is spent
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued"
    assert body["message"] == "Story generation queued successfully"
    assert body["estimatedWaitTime"] == {
        "position": 0,
        "queueLength": 1,
        "activeJobs": 0,
        "estimatedMinutes": 5,  # ceil(1/5) rounds x 4.5 min, rounded up
        "mayBeOvertaken": False,  # next in line for a free slot
        "atUserCap": False,
        "heldByUserCap": False,
        "ownJobsAhead": 0,
    }
    assert body["creditsRemaining"] == 1
    assert response.headers["Location"] == f"/api/job/{body['jobId']}"
    assert response.headers["RateLimit-Limit"] == "10"
    assert db.balance(user.id) == 1
    # And the story row exists before any generation, with its job pending
    story = db.run(
        "select title, genre, target_words, content, status from public.stories where id = %s",
        (body["storyId"],),
    )
    assert story == [("The Door", "fantasy", 800, None, "pending")]
    assert db.job_status(body["jobId"]) == "pending"
    # And the job waits in Redis
    assert fresh_redis.client().zscore("storyq:waiting", body["jobId"]) is not None


async def test_defaults_fill_language_and_length(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    response = await client.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    assert response.status_code == 202
    row = db.run(
        "select language, target_words from public.stories where id = %s",
        (response.json()["storyId"],),
    )
    assert row == [("en", 1200)]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({**GENERATE_BODY, "colour": "blue"}, ["body", "colour"]),
        ({**GENERATE_BODY, "target_words": 500}, ["body", "target_words"]),
        ({**GENERATE_BODY, "targetWords": "1200"}, ["body", "targetWords"]),
        ({**GENERATE_BODY, "targetWords": 99}, ["body", "targetWords"]),
        ({**GENERATE_BODY, "targetWords": 5001}, ["body", "targetWords"]),
        ({**GENERATE_BODY, "targetWords": True}, ["body", "targetWords"]),
        ({"prompt": ""}, ["body", "prompt"]),
        ({"prompt": "   "}, ["body", "prompt"]),
        ({"prompt": "x" * 4001}, ["body", "prompt"]),
        ({"prompt": 42}, ["body", "prompt"]),
        ({}, ["body", "prompt"]),
        ({**GENERATE_BODY, "title": 7}, ["body", "title"]),
        ({**GENERATE_BODY, "language": "english!"}, ["body", "language"]),
    ],
)
async def test_invalid_bodies_are_422_and_cost_nothing(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db, body: dict[str, Any], where: list[str]
) -> None:
    user = make_user(credits=1)
    response = await client.post("/api/generate", json=body, headers=user.headers)
    problem = assert_problem(response, 422, "validation_error")
    assert where in [error["loc"] for error in problem["errors"]]
    assert all(set(error) == {"loc", "msg"} for error in problem["errors"])
    assert db.balance(user.id) == 1


async def test_a_body_that_is_not_json_is_422(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = make_user(credits=1)
    response = await client.post(
        "/api/generate",
        content=b"{not json",
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert_problem(response, 422, "validation_error")


async def test_a_body_over_the_cap_is_413_by_its_content_length_and_says_the_limit(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    body = b'{"prompt": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = await client.post(
        "/api/generate", content=body, headers={**user.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")
    assert str(MAX_BODY_BYTES) in response.json()["detail"]
    assert db.balance(user.id) == 1


async def test_a_streamed_body_over_the_cap_is_413_without_a_content_length(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    # Given a chunked body (no Content-Length) that grows past the cap
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    user = make_user(credits=1)
    response = await client.post(
        "/api/generate",
        content=chunks(),
        headers={**user.headers, "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload_too_large")


async def test_without_credits_it_is_402_and_nothing_is_written(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=0)
    response = await client.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    assert_problem(response, 402, "insufficient_credits")
    assert db.value("select count(*) from public.story_jobs where user_id = %s", (user.id,)) == 0
    assert db.value("select count(*) from public.stories where user_id = %s", (user.id,)) == 0


async def test_the_free_credit_grant_applies_on_first_enqueue(
    settings: Settings, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=0)
    async with client_for(settings.model_copy(update={"free_credits": 3})) as http:
        response = await http.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    assert response.status_code == 202
    assert response.json()["creditsRemaining"] == 2
    assert db.balance(user.id) == 2


async def test_same_idempotency_key_and_body_replays_the_first_job_and_debits_once(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=5)
    headers = {**user.headers, "Idempotency-Key": "click-1"}
    first = await client.post("/api/generate", json=GENERATE_BODY, headers=headers)
    # The same body with other key order and defaults spelled out hashes alike
    again = await client.post(
        "/api/generate",
        json={"targetWords": 1200, "language": "en", **GENERATE_BODY},
        headers=headers,
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["jobId"] == first.json()["jobId"]
    assert again.json()["storyId"] == first.json()["storyId"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert db.balance(user.id) == 4
    assert db.value("select count(*) from public.story_jobs where user_id = %s", (user.id,)) == 1


async def test_a_key_outlives_its_cleaned_job_and_still_debits_once(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given a keyed story that completed, and an admin who then cleaned completed job rows
    user = make_user(credits=5)
    admin_headers = make_user(admin=True).headers
    headers = {**user.headers, "Idempotency-Key": "click-after-clean"}
    first = (await client.post("/api/generate", json=GENERATE_BODY, headers=headers)).json()
    db.start(first["jobId"])
    db.complete(first["jobId"], "Once upon a time.", {})
    db.run(
        "update story_jobs set finished_at = now() - interval '1 minute' where id = %s",
        (first["jobId"],),
    )
    cleaned = await client.post(
        "/api/admin/queue/clean", json={"status": "completed"}, headers=admin_headers
    )
    assert cleaned.json()["deleted"] >= 1

    # When the client retries the same request with the same key
    again = await client.post("/api/generate", json=GENERATE_BODY, headers=headers)

    # Then it gets the first answer's ids, the job's real status, and pays nothing more
    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (again.json()["jobId"], again.json()["storyId"]) == (first["jobId"], first["storyId"])
    assert again.json()["status"] != "queued"
    assert db.balance(user.id) == 4
    assert db.value("select count(*) from public.stories where user_id = %s", (user.id,)) == 1


async def test_same_idempotency_key_with_another_body_is_409(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=5)
    headers = {**user.headers, "Idempotency-Key": "click-2"}
    assert (
        await client.post("/api/generate", json=GENERATE_BODY, headers=headers)
    ).status_code == 202
    response = await client.post(
        "/api/generate", json={"prompt": "Another story entirely."}, headers=headers
    )
    assert_problem(response, 409, "idempotency_conflict")
    assert db.balance(user.id) == 4


async def test_idempotency_keys_are_per_user(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    alice, bob = make_user(credits=1), make_user(credits=1)
    key = {"Idempotency-Key": "shared-key"}
    a = await client.post("/api/generate", json=GENERATE_BODY, headers={**alice.headers, **key})
    b = await client.post("/api/generate", json=GENERATE_BODY, headers={**bob.headers, **key})
    assert a.status_code == b.status_code == 202
    assert a.json()["jobId"] != b.json()["jobId"]


@pytest.mark.parametrize("key", [b"k" * 256, b"has space", "ünïcode".encode()])
async def test_a_malformed_idempotency_key_is_422(
    client: httpx.AsyncClient, make_user: MakeUser, key: bytes
) -> None:
    user = make_user(credits=1)
    headers = [(b"authorization", f"Bearer {user.token}".encode()), (b"idempotency-key", key)]
    response = await client.post("/api/generate", json=GENERATE_BODY, headers=headers)
    assert_problem(response, 422, "validation_error")


async def test_the_rate_limit_answers_429_with_its_headers(
    settings: Settings, make_user: MakeUser, db: Db
) -> None:
    # Given a limit of two generations a minute
    user = make_user(credits=10)
    limited = settings.model_copy(update={"generate_rate_limit": 2})
    async with client_for(limited) as http:
        answers = [
            await http.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
            for _ in range(3)
        ]
    # Then the third is refused, with when to come back, and costs nothing
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[1].headers["RateLimit-Remaining"] == "0"
    refused = answers[2]
    assert_problem(refused, 429, "rate_limited")
    assert refused.headers["RateLimit-Limit"] == "2"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
    assert db.balance(user.id) == 8


async def test_the_limit_is_per_user(settings: Settings, make_user: MakeUser) -> None:
    alice, bob = make_user(credits=2), make_user(credits=2)
    async with client_for(settings.model_copy(update={"generate_rate_limit": 1})) as http:
        assert (
            await http.post("/api/generate", json=GENERATE_BODY, headers=alice.headers)
        ).status_code == 202
        assert (
            await http.post("/api/generate", json=GENERATE_BODY, headers=alice.headers)
        ).status_code == 429
        assert (
            await http.post("/api/generate", json=GENERATE_BODY, headers=bob.headers)
        ).status_code == 202


async def test_postgres_down_is_503_and_nothing_is_debited(
    settings: Settings, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    async with client_for(settings.model_copy(update={"supabase_url": dead_url()})) as http:
        response = await http.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    body = assert_problem(response, 503, "database_unavailable")
    assert "127.0.0.1" not in body["detail"]
    assert db.balance(user.id) == 1


async def test_redis_down_after_the_debit_still_answers_202_and_the_job_waits_in_postgres(
    settings: Settings, make_user: MakeUser, db: Db
) -> None:
    # Given Redis (Upstash) unreachable
    user = make_user(credits=1)
    async with client_for(
        settings.model_copy(update={"upstash_redis_rest_url": dead_url()})
    ) as http:
        response = await http.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    # Then the debit stands, the answer is 202 without an ETA, and the job is pending
    assert response.status_code == 202, response.text
    assert response.json()["estimatedWaitTime"] is None
    assert db.balance(user.id) == 0
    assert db.job_status(response.json()["jobId"]) == "pending"


async def test_the_service_role_cannot_generate(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    key = settings.supabase_service_role_key.get_secret_value()
    response = await client.post(
        "/api/generate", json=GENERATE_BODY, headers={"Authorization": f"Bearer {key}"}
    )
    assert_problem(response, 403, "forbidden")


async def test_a_valid_token_for_a_user_not_in_auth_users_is_401_not_a_500(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/generate", json=GENERATE_BODY, headers=bearer(token_for(uuid.uuid4()))
    )
    assert_problem(response, 401, "user_not_found")
