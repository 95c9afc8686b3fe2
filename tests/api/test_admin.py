"""Operator endpoints: queue counts, clean, empty, retry, cancel and credits, for admins only."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from storyq.clients import async_redis
from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq_local.stack.redis_server import RedisProcess
from tests.api.conftest import GENERATE_BODY, assert_problem, client_for, dead_url
from tests.support.sql import Db
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]


@pytest.fixture
def admin(make_user: MakeUser) -> ApiUser:
    return make_user(admin=True)


async def _queue(client: httpx.AsyncClient, user: ApiUser) -> dict[str, Any]:
    response = await client.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_queue_counts_merge_redis_and_postgres(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    admin: ApiUser,
    db: Db,
    fresh_redis: RedisProcess,
) -> None:
    before = (await client.get("/api/admin/queue", headers=admin.headers)).json()
    user = make_user(credits=3)
    for _ in range(2):
        await _queue(client, user)
    c = await _queue(client, user)
    db.start(c["jobId"])
    db.complete(c["jobId"], "Done.", {})
    response = await client.get("/api/admin/queue", headers=admin.headers)
    assert response.status_code == 200
    stats = response.json()
    assert set(stats) == {
        "waiting",
        "active",
        "delayed",
        "completed",
        "failed",
        "cancelled",
        "maxActive",
        "avgGenerationSeconds",
        "oldestPendingAt",
        "source",
        "promptTokensToday",
        "completionTokensToday",
        "costUsdToday",
        "providerPause",
        "byTier",
        "heldByUserCap",
    }
    assert stats["source"] == "redis"
    assert stats["providerPause"] is None
    assert stats["heldByUserCap"] == 0
    # c was completed behind Redis's back (no worker acked it): Redis still lists three waiting
    assert stats["waiting"] == 3
    assert stats["active"] == 0
    assert stats["delayed"] == 0
    assert stats["completed"] == before["completed"] + 1
    assert stats["maxActive"] == 5
    assert stats["avgGenerationSeconds"] == 270.0


async def test_queue_counts_show_the_tokens_and_cost_of_today(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given the figures as they are, and a job whose running attempt records its usage
    before = (await client.get("/api/admin/queue", headers=admin.headers)).json()
    queued = await _queue(client, make_user(credits=1))
    db.start(queued["jobId"])
    db.record_usage(queued["jobId"], prompt_tokens=400, completion_tokens=1600, cost_usd=0.25)

    # When an admin looks at the queue, Then today's figures count it, while it still runs
    stats = (await client.get("/api/admin/queue", headers=admin.headers)).json()
    assert stats["promptTokensToday"] - before["promptTokensToday"] == 400
    assert stats["completionTokensToday"] - before["completionTokensToday"] == 1600
    assert stats["costUsdToday"] - before["costUsdToday"] == pytest.approx(0.25)


async def test_queue_counts_show_waiting_and_running_jobs_per_tier(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given a pro user with two jobs queued, one of them started
    before = (await client.get("/api/admin/queue", headers=admin.headers)).json()
    pro = make_user(credits=2)
    db.set_tier(pro.id, "pro")
    first = await _queue(client, pro)
    await _queue(client, pro)
    db.start(first["jobId"])

    # When an admin looks at the queue, Then the pro tier shows one waiting and one running
    stats = (await client.get("/api/admin/queue", headers=admin.headers)).json()

    def load(document: dict[str, Any]) -> tuple[int, int]:
        rows = [row for row in document["byTier"] if row["tier"] == "pro"]
        return (rows[0]["pending"], rows[0]["processing"]) if rows else (0, 0)

    pending, processing = load(stats)
    pending_before, processing_before = load(before)
    assert (pending - pending_before, processing - processing_before) == (1, 1)


async def test_queue_counts_show_the_providers_pause(
    client: httpx.AsyncClient, settings: Settings, admin: ApiUser
) -> None:
    # Given a worker paused the provider after a 429 asking for 30 s
    redis = async_redis(settings)
    queue = Dispatcher(redis, max_active=settings.max_active_jobs)
    try:
        await queue.pause(30.0, reason="rate_limited")

        # When an admin looks at the queue, Then the pause is there: why, until when
        stats = (await client.get("/api/admin/queue", headers=admin.headers)).json()
        pause = stats["providerPause"]
        assert (pause["reason"], pause["strikes"], pause["probing"]) == ("rate_limited", 1, False)
        left = datetime.fromisoformat(pause["until"]) - datetime.now(UTC)
        assert 25 < left.total_seconds() <= 30.5

        # And once a probe is answered it is gone
        await queue.resume()
        stats = (await client.get("/api/admin/queue", headers=admin.headers)).json()
        assert stats["providerPause"] is None
    finally:
        await redis.close()


async def test_queue_counts_fall_back_to_postgres_when_redis_is_down(
    settings: Settings, admin: ApiUser, db: Db
) -> None:
    async with client_for(
        settings.model_copy(update={"upstash_redis_rest_url": dead_url()})
    ) as http:
        response = await http.get("/api/admin/queue", headers=admin.headers)
    assert response.status_code == 200
    stats = response.json()
    assert stats["source"] == "postgres"
    assert stats["waiting"] == db.value("select count(*) from story_jobs where status = 'pending'")
    assert stats["active"] == db.value(
        "select count(*) from story_jobs where status = 'processing'"
    )


async def test_clean_deletes_finished_job_rows_but_never_stories(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    user = make_user(credits=2)
    done, waiting = await _queue(client, user), await _queue(client, user)
    db.start(done["jobId"])
    db.complete(done["jobId"], "Done.", {})
    # An age filter keeps recent rows
    recent = await client.post(
        "/api/admin/queue/clean",
        json={"status": "completed", "olderThanSeconds": 3600},
        headers=admin.headers,
    )
    assert recent.status_code == 200
    assert db.value("select count(*) from story_jobs where id = %s", (done["jobId"],)) == 1
    # Age 0 takes every completed row
    response = await client.post(
        "/api/admin/queue/clean", json={"status": "completed"}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["status"] == "completed"
    assert response.json()["deleted"] >= 1
    assert db.value("select count(*) from story_jobs where id = %s", (done["jobId"],)) == 0
    assert db.value("select count(*) from stories where id = %s", (done["storyId"],)) == 1
    assert db.job_status(waiting["jobId"]) == "pending"


async def test_clean_deletes_cancelled_job_rows_too(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given a job the user cancelled a while ago
    user = make_user(credits=1)
    job = await _queue(client, user)
    assert (
        await client.delete(f"/api/job/{job['jobId']}", headers=user.headers)
    ).status_code == 200
    db.run(
        "update story_jobs set finished_at = now() - interval '1 hour' where id = %s",
        (job["jobId"],),
    )

    # When an admin cleans cancelled rows older than a minute
    response = await client.post(
        "/api/admin/queue/clean",
        json={"status": "cancelled", "olderThanSeconds": 60},
        headers=admin.headers,
    )

    # Then the row is gone and the story stays
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert db.value("select count(*) from story_jobs where id = %s", (job["jobId"],)) == 0
    assert db.value("select status from stories where id = %s", (job["storyId"],)) == "cancelled"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "pending"},
        {"status": "completed", "olderThanSeconds": -1},
        {"status": "completed", "olderThanSeconds": "3600"},
        {"status": "completed", "extra": 1},
        {},
    ],
)
async def test_clean_validates_its_body(
    client: httpx.AsyncClient, admin: ApiUser, body: dict[str, Any]
) -> None:
    response = await client.post("/api/admin/queue/clean", json=body, headers=admin.headers)
    assert_problem(response, 422, "validation_error")


async def test_empty_cancels_and_refunds_every_waiting_job(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    admin: ApiUser,
    db: Db,
    fresh_redis: RedisProcess,
) -> None:
    user = make_user(credits=2)
    first, second = await _queue(client, user), await _queue(client, user)
    running = make_user(credits=1)
    busy = await _queue(client, running)
    db.start(busy["jobId"])
    response = await client.post("/api/admin/queue/empty", headers=admin.headers)
    assert response.status_code == 200
    body = response.json()
    assert {first["jobId"], second["jobId"]} <= set(body["jobIds"])
    assert body["cancelled"] == len(body["jobIds"])
    assert db.job_status(first["jobId"]) == db.job_status(second["jobId"]) == "cancelled"
    assert db.job_status(busy["jobId"]) == "processing"
    assert db.balance(user.id) == 2
    assert fresh_redis.client().zcard("storyq:waiting") == 0


async def test_retry_puts_a_failed_job_back_without_charging_again(
    client: httpx.AsyncClient,
    make_user: MakeUser,
    admin: ApiUser,
    db: Db,
    fresh_redis: RedisProcess,
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user)
    db.start(queued["jobId"])
    db.fail(queued["jobId"])
    assert db.balance(user.id) == 1  # refunded
    fresh_redis.client().flushall()
    response = await client.post(f"/api/admin/job/{queued['jobId']}/retry", headers=admin.headers)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "pending"
    assert job["attempts"] == 0
    assert job["waitTime"]["position"] == 0
    assert db.balance(user.id) == 1
    assert fresh_redis.client().zscore("storyq:waiting", queued["jobId"]) is not None


async def test_retry_refuses_a_job_that_has_not_failed(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser
) -> None:
    queued = await _queue(client, make_user(credits=1))
    response = await client.post(f"/api/admin/job/{queued['jobId']}/retry", headers=admin.headers)
    assert_problem(response, 409, "job_not_retryable")


async def test_retry_of_unknown_or_malformed_ids_is_404(
    client: httpx.AsyncClient, admin: ApiUser
) -> None:
    for job_id in (str(uuid.uuid4()), "nope"):
        response = await client.post(f"/api/admin/job/{job_id}/retry", headers=admin.headers)
        assert_problem(response, 404, "not_found")


async def test_admins_cancel_any_users_job(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given a user's waiting job and running job
    user = make_user(credits=2)
    waiting = (await _queue(client, user))["jobId"]
    running = (await _queue(client, user))["jobId"]
    db.start(running)

    # When an admin cancels both
    cancelled = await client.post(f"/api/admin/job/{waiting}/cancel", headers=admin.headers)
    requested = await client.post(f"/api/admin/job/{running}/cancel", headers=admin.headers)

    # Then the waiting one is cancelled by an admin and refunded, the running one is being
    # cancelled
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["cancelReason"], cancelled.json()["refunded"]) == ("admin", True)
    assert requested.status_code == 202, requested.text
    assert requested.json()["cancelRequested"] is True
    assert db.value("select cancel_reason from public.story_jobs where id = %s", (running,)) == (
        "admin"
    )
    assert db.balance(user.id) == 1


async def test_credits_are_granted_by_admins(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    user = make_user(credits=2)
    response = await client.post(
        "/api/admin/credits", json={"userId": str(user.id), "amount": 5}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json() == {"userId": str(user.id), "credits": 7}
    assert db.balance(user.id) == 7
    assert db.value("select sum(amount) from credit_ledger where user_id = %s", (user.id,)) == 7


async def test_credits_for_an_unknown_user_are_404(
    client: httpx.AsyncClient, admin: ApiUser
) -> None:
    response = await client.post(
        "/api/admin/credits", json={"userId": str(uuid.uuid4()), "amount": 5}, headers=admin.headers
    )
    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 5},
        {"userId": "x", "amount": 5},
        {"userId": "USER", "amount": 0},
        {"userId": "USER", "amount": -3},
        {"userId": "USER", "amount": 2.5},
        {"userId": "USER", "amount": "5"},
        {"userId": "USER", "amount": 5, "reason": "gift"},
    ],
)
async def test_credit_grants_are_validated(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, body: dict[str, Any]
) -> None:
    user = make_user()
    grant = {key: str(user.id) if value == "USER" else value for key, value in body.items()}
    response = await client.post("/api/admin/credits", json=grant, headers=admin.headers)
    assert_problem(response, 422, "validation_error")


async def test_users_cannot_use_any_admin_endpoint(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = make_user(credits=1)
    job = await _queue(client, user)
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/api/admin/queue", None),
        ("POST", "/api/admin/queue/clean", {"status": "completed"}),
        ("POST", "/api/admin/queue/empty", None),
        ("POST", f"/api/admin/job/{job['jobId']}/retry", None),
        ("POST", f"/api/admin/job/{job['jobId']}/cancel", None),
        ("POST", "/api/admin/credits", {"userId": str(user.id), "amount": 100}),
    ]
    for method, path, body in calls:
        response = await client.request(method, path, json=body, headers=user.headers)
        assert_problem(response, 403, "forbidden")
    assert (await client.get(f"/api/job/{job['jobId']}", headers=user.headers)).json()[
        "status"
    ] == "pending"


async def test_the_service_role_key_works_on_admin_endpoints(
    client: httpx.AsyncClient, settings: Settings, make_user: MakeUser
) -> None:
    user = make_user()
    key = settings.supabase_service_role_key.get_secret_value()
    response = await client.post(
        "/api/admin/credits",
        json={"userId": str(user.id), "amount": 1},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200
