"""The operator's job browser: every user's jobs, filtered and paged, and one job with its story
so far and every attempt; for admins only.

The session's database holds every API test's jobs, so each test filters by its own users or
by the instant it started, and looks only at the jobs it made.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from storyq.config import Settings
from tests.api.conftest import GENERATE_BODY, assert_problem
from tests.support.sql import Db
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]

LISTED_FIELDS = {
    "jobId",
    "storyId",
    "userId",
    "title",
    "status",
    "tier",
    "priority",
    "attempts",
    "maxAttempts",
    "createdAt",
    "startedAt",
    "finishedAt",
    "errorCode",
    "refunded",
    "cancelRequested",
    "cancelReason",
    "words",
}

DETAIL_FIELDS = {
    "prompt",
    "genre",
    "language",
    "targetWords",
    "errorMessage",
    "heartbeatAt",
    "nextAttemptAt",
    "storyStatus",
    "content",
    "attemptHistory",
}


@pytest.fixture
def admin(make_user: MakeUser) -> ApiUser:
    return make_user(admin=True)


async def _queue(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> str:
    response = await client.post(
        "/api/generate", json={**GENERATE_BODY, **body}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


async def _browse(
    client: httpx.AsyncClient, admin: ApiUser, params: dict[str, Any] | list[tuple[str, Any]]
) -> dict[str, Any]:
    response = await client.get("/api/admin/jobs", params=params, headers=admin.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def _ids(page: dict[str, Any]) -> list[str]:
    return [job["jobId"] for job in page["jobs"]]


def _cursor(instant: str, job_id: uuid.UUID | None = None) -> str:
    """A cursor as a client could forge one (the API's encoding of an instant and a job id)."""
    raw = f"{instant}|{job_id or uuid.uuid4()}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _now(db: Db) -> str:
    """The database's clock, which stamps created_at, as RFC 3339."""
    instant: datetime = db.value("select now()")
    return instant.isoformat()


async def test_admins_see_every_users_jobs_newest_first(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given jobs of two users, queued in turn, one of them started and writing
    since = _now(db)
    alice, bob = make_user(credits=2), make_user(credits=1)
    first = await _queue(client, alice, title="First")
    second = await _queue(client, bob)
    third = await _queue(client, alice)
    db.start(second)
    db.write(second, 0, "Once upon a time")

    # When an admin lists the jobs created since
    page = await _browse(client, admin, {"createdAfter": since})

    # Then both users' jobs are there, newest first, with what the browser shows of each
    mine = [job for job in page["jobs"] if job["jobId"] in {first, second, third}]
    assert [job["jobId"] for job in mine] == [third, second, first]
    assert [job["userId"] for job in mine] == [str(alice.id), str(bob.id), str(alice.id)]
    assert all(set(job) == LISTED_FIELDS for job in page["jobs"])
    _, running, oldest = mine
    assert (oldest["title"], oldest["status"], oldest["attempts"], oldest["words"]) == (
        "First",
        "pending",
        0,
        None,
    )
    assert (running["status"], running["attempts"], running["words"]) == ("processing", 1, 4)
    assert running["startedAt"] is not None
    assert (oldest["tier"], oldest["maxAttempts"], oldest["refunded"]) == ("free", 3, False)
    assert page["nextCursor"] is None
    created = [job["createdAt"] for job in page["jobs"]]
    assert created == sorted(created, reverse=True)


async def test_the_status_filter_takes_one_status_or_several(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given a user's jobs: one waiting, one running, one completed, one failed
    user = make_user(credits=4)
    waiting = await _queue(client, user)
    running, completed, failed = [await _queue(client, user) for _ in range(3)]
    for job_id in (completed, failed, running):
        db.start(job_id)
        if job_id == completed:
            db.complete(job_id, "The end.", {})
        elif job_id == failed:
            db.fail(job_id, code="content_filter", message="refused")

    # When an admin asks for the user's failed jobs, then for completed and waiting ones
    only_failed = await _browse(client, admin, {"userId": str(user.id), "status": "failed"})
    two = await _browse(
        client,
        admin,
        [("userId", str(user.id)), ("status", "completed"), ("status", "pending")],
    )
    every = await _browse(client, admin, {"userId": str(user.id)})

    # Then each answer holds exactly those, and no filter means every status
    assert _ids(only_failed) == [failed]
    assert only_failed["jobs"][0]["errorCode"] == "content_filter"
    assert only_failed["jobs"][0]["refunded"] is True
    assert _ids(two) == [completed, waiting]
    assert _ids(every) == [failed, completed, running, waiting]


async def test_the_user_filter_shows_only_that_users_jobs(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser
) -> None:
    # Given two users with jobs
    alice, bob = make_user(credits=2), make_user(credits=1)
    alices = [await _queue(client, alice), await _queue(client, alice)]
    await _queue(client, bob)

    # When an admin filters by Alice, Then only hers come, newest first
    page = await _browse(client, admin, {"userId": str(alice.id)})
    assert _ids(page) == alices[::-1]
    # And a user without jobs has none
    assert _ids(await _browse(client, admin, {"userId": str(uuid.uuid4())})) == []


async def test_the_tier_filter_uses_the_tier_at_enqueue(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given a pro user's job, a free user's, and a job from before tiers
    since = _now(db)
    pro, free = make_user(credits=1), make_user(credits=2)
    db.set_tier(pro.id, "pro")
    pro_job = await _queue(client, pro)
    free_job = await _queue(client, free)
    old_job = await _queue(client, free)
    db.run("update public.story_jobs set tier = null where id = %s", (old_job,))

    # When an admin filters by tier
    pros = await _browse(client, admin, {"tier": "pro", "createdAfter": since})
    frees = await _browse(client, admin, {"tier": "free", "userId": str(free.id)})
    none = await _browse(client, admin, {"tier": "(none)", "createdAfter": since})

    # Then each tier holds its own jobs; `(none)` names the jobs from before tiers
    assert pro_job in _ids(pros)
    assert {free_job, old_job}.isdisjoint(_ids(pros))
    assert _ids(frees) == [free_job]
    assert _ids(none) == [old_job]
    assert none["jobs"][0]["tier"] is None


async def test_the_time_filters_take_created_after_inclusive_and_before_exclusive(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given a user's jobs created on three days of 2020
    user = make_user(credits=3)
    jobs = [await _queue(client, user) for _ in range(3)]
    for day, job_id in enumerate(jobs, start=1):
        db.run(
            "update public.story_jobs set created_at = %s where id = %s",
            (f"2020-01-0{day}T00:00:00Z", job_id),
        )
    who = {"userId": str(user.id)}

    # When an admin asks from the second day on, before the third, and both in another offset
    after = await _browse(client, admin, {**who, "createdAfter": "2020-01-02T00:00:00Z"})
    before = await _browse(client, admin, {**who, "createdBefore": "2020-01-03T00:00:00Z"})
    within = await _browse(
        client,
        admin,
        {
            **who,
            # the second and the third day's first instants, in other offsets
            "createdAfter": "2020-01-01T23:00:00-01:00",
            "createdBefore": "2020-01-03T00:30:00+00:30",
        },
    )

    # Then createdAfter includes its instant and createdBefore excludes its own
    assert _ids(after) == [jobs[2], jobs[1]]
    assert _ids(before) == [jobs[1], jobs[0]]
    assert _ids(within) == [jobs[1]]


async def test_three_pages_hold_every_job_once_while_new_jobs_arrive(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given seven jobs of two users, queued in turn
    since = _now(db)
    alice, bob = make_user(credits=6), make_user(credits=6)
    queued = [await _queue(client, alice if n % 2 else bob) for n in range(7)]

    # When an admin pages through them three at a time, while both users queue more
    first = await _browse(client, admin, {"createdAfter": since, "limit": 3})
    arrived = [await _queue(client, alice), await _queue(client, bob)]
    second = await _browse(
        client, admin, {"createdAfter": since, "limit": 3, "cursor": first["nextCursor"]}
    )
    arrived.append(await _queue(client, alice))
    third = await _browse(
        client, admin, {"createdAfter": since, "limit": 3, "cursor": second["nextCursor"]}
    )

    # Then the three pages hold the seven jobs, newest first, each once, and end there
    assert [len(page["jobs"]) for page in (first, second, third)] == [3, 3, 1]
    assert _ids(first) + _ids(second) + _ids(third) == queued[::-1]
    assert third["nextCursor"] is None
    assert isinstance(first["nextCursor"], str)
    # And the jobs that arrived meanwhile lead a fresh first page
    fresh = await _browse(client, admin, {"createdAfter": since, "limit": 3})
    assert _ids(fresh) == arrived[::-1]


async def test_a_job_shows_its_story_so_far_and_every_attempt(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given a job whose first attempt failed and was retried, and whose second is writing
    user = make_user(credits=1)
    job_id = await _queue(
        client, user, title="Storm", genre="fantasy", language="de", targetWords=300
    )
    db.start(job_id)
    db.record_usage(job_id, prompt_tokens=120, completion_tokens=800, cost_usd=0.0005)
    db.retry(job_id, code="upstream_timeout")
    db.start(job_id)
    db.record_usage(job_id, prompt_tokens=130, completion_tokens=40, cost_usd=0.0001)
    db.write(job_id, 0, "Es war einmal ein Sturm")

    # When an admin opens it
    response = await client.get(f"/api/admin/job/{job_id}", headers=admin.headers)

    # Then it shows the job, the request, the text written so far and both attempts in order
    assert response.status_code == 200, response.text
    job = response.json()
    assert set(job) == LISTED_FIELDS | DETAIL_FIELDS
    assert (job["jobId"], job["userId"], job["status"], job["attempts"]) == (
        job_id,
        str(user.id),
        "processing",
        2,
    )
    assert (job["title"], job["prompt"], job["genre"], job["language"], job["targetWords"]) == (
        "Storm",
        GENERATE_BODY["prompt"],
        "fantasy",
        "de",
        300,
    )
    assert (job["storyStatus"], job["content"], job["words"]) == (
        "writing",
        "Es war einmal ein Sturm",
        5,
    )
    assert job["cancelRequested"] is False
    assert job["heartbeatAt"] is not None
    first, second = job["attemptHistory"]
    assert (first["attempt"], first["outcome"], first["errorCode"], first["errorMessage"]) == (
        1,
        "retrying",
        "upstream_timeout",
        "try again",
    )
    assert first["endedAt"] is not None
    assert (first["promptTokens"], first["completionTokens"], first["model"]) == (
        120,
        800,
        "gpt-4o-mini",
    )
    assert first["costUsd"] == pytest.approx(0.0005)
    assert first["usageRecordedAt"] is not None
    assert (second["attempt"], second["outcome"], second["endedAt"]) == (2, None, None)
    assert (second["errorCode"], second["errorMessage"]) == (None, None)
    assert (second["promptTokens"], second["completionTokens"]) == (130, 40)
    assert second["fence"] > first["fence"]
    assert first["startedAt"] <= second["startedAt"]

    # And once the second attempt fails for good, its own error is on its row, the text stays
    db.fail(job_id, code="generator_error", message="the model gave up")
    failed = (await client.get(f"/api/admin/job/{job_id}", headers=admin.headers)).json()
    assert (failed["status"], failed["errorCode"], failed["errorMessage"]) == (
        "failed",
        "generator_error",
        "the model gave up",
    )
    assert failed["refunded"] is True
    assert failed["content"] == "Es war einmal ein Sturm"
    assert [a["outcome"] for a in failed["attemptHistory"]] == ["retrying", "failed"]
    assert [a["errorMessage"] for a in failed["attemptHistory"]] == [
        "try again",
        "the model gave up",
    ]


async def test_a_waiting_job_has_no_story_text_and_no_attempts_yet(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser
) -> None:
    job_id = await _queue(client, make_user(credits=1))
    response = await client.get(f"/api/admin/job/{job_id}", headers=admin.headers)
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["status"], job["storyStatus"], job["content"], job["words"]) == (
        "pending",
        "pending",
        None,
        None,
    )
    assert (job["targetWords"], job["language"], job["genre"]) == (1200, "en", None)
    assert job["attemptHistory"] == []


async def test_an_unknown_job_is_404(client: httpx.AsyncClient, admin: ApiUser) -> None:
    for job_id in (str(uuid.uuid4()), "nope"):
        response = await client.get(f"/api/admin/job/{job_id}", headers=admin.headers)
        assert_problem(response, 404, "not_found")


async def test_users_get_403_and_strangers_401(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    # Given a user with a job of their own
    user = make_user(credits=1)
    job_id = await _queue(client, user)

    for path in ("/api/admin/jobs", f"/api/admin/job/{job_id}"):
        # When the user asks the browser, Then it is refused; without a token too
        assert_problem(await client.get(path, headers=user.headers), 403, "forbidden")
        assert_problem(await client.get(path), 401, "unauthorized")


async def test_the_service_role_key_may_browse(
    client: httpx.AsyncClient, settings: Settings, make_user: MakeUser
) -> None:
    user = make_user(credits=1)
    job_id = await _queue(client, user)
    key = settings.supabase_service_role_key.get_secret_value()
    headers = {"Authorization": f"Bearer {key}"}
    listed = await client.get(f"/api/admin/jobs?userId={user.id}", headers=headers)
    assert listed.status_code == 200, listed.text
    assert _ids(listed.json()) == [job_id]
    assert (await client.get(f"/api/admin/job/{job_id}", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("userId=nope", "userId"),
        ("status=running", "status"),
        ("status=failed,cancelled", "status"),
        ("tier=Pro!", "tier"),
        ("createdAfter=2026-12-01", "createdAfter"),
        ("createdAfter=2026-12-01T10:00:00", "createdAfter"),
        ("createdAfter=2026-12-01T10:00:00+01:00", "createdAfter"),  # + unescaped: a space
        ("createdBefore=1764547200", "createdBefore"),
        ("createdBefore=yesterday", "createdBefore"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=%25%25%25", "cursor"),
        ("cursor=aGVsbG98d29ybGQ", "cursor"),  # base64 of "hello|world"
        (f"cursor={_cursor('2026-12-01T00:00:00')}", "cursor"),  # no offset
    ],
)
async def test_bad_query_parameters_are_422_naming_the_parameter(
    client: httpx.AsyncClient, admin: ApiUser, query: str, parameter: str
) -> None:
    response = await client.get(f"/api/admin/jobs?{query}", headers=admin.headers)
    body = assert_problem(response, 422, "validation_error")
    assert ["query", parameter] in [error["loc"][:2] for error in body["errors"]]


async def test_a_forged_cursor_with_a_far_offset_pages_from_its_instant(
    client: httpx.AsyncClient, make_user: MakeUser, admin: ApiUser, db: Db
) -> None:
    # Given a user's job created on the second day of 2020
    user = make_user(credits=1)
    job_id = await _queue(client, user)
    db.run(
        "update public.story_jobs set created_at = '2020-01-02T00:00:00Z' where id = %s",
        (job_id,),
    )

    # When a cursor names a later instant in an offset Postgres does not take (+23:30)
    cursor = _cursor("2020-01-03T23:30:00+23:30", uuid.UUID(int=0))
    page = await _browse(client, admin, {"userId": str(user.id), "cursor": cursor})

    # Then the page continues from that instant: the older job, and no error
    assert _ids(page) == [job_id]
