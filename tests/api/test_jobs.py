"""A user's jobs and stories: status by status, paging, cancelling, and never another user's."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from storyq.config import Settings
from storyq_local.stack.redis_server import RedisProcess
from tests.api.conftest import GENERATE_BODY, assert_problem, client_for, dead_url
from tests.support.sql import Db
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]


async def _queue(client: httpx.AsyncClient, user: ApiUser, **body: Any) -> dict[str, Any]:
    response = await client.post(
        "/api/generate", json={**GENERATE_BODY, **body}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_pending_job_shows_its_place_in_the_queue(
    client: httpx.AsyncClient, make_user: MakeUser, fresh_redis: RedisProcess
) -> None:
    # Given two jobs from two users in an empty queue
    alice, bob = make_user(credits=1), make_user(credits=1)
    await _queue(client, alice)
    queued = await _queue(client, bob, title="Second")
    # When Bob asks about his
    response = await client.get(f"/api/job/{queued['jobId']}", headers=bob.headers)
    # Then it is pending, second in line, with everything the contract lists
    assert response.status_code == 200
    job = response.json()
    assert job["jobId"] == queued["jobId"]
    assert job["storyId"] == queued["storyId"]
    assert job["title"] == "Second"
    assert job["status"] == "pending"
    assert job["attempts"] == 0
    assert job["maxAttempts"] == 3
    assert job["createdAt"]
    assert job["startedAt"] is None
    assert job["finishedAt"] is None
    assert job["waitTime"] == {
        "position": 1,
        "queueLength": 2,
        "activeJobs": 0,
        "estimatedMinutes": 5,
        "mayBeOvertaken": False,  # four slots are free: the next claim takes it
        "atUserCap": False,
        "heldByUserCap": False,
        "ownJobsAhead": 0,
    }
    assert {"progress", "result", "error", "refunded"}.isdisjoint(job)


async def test_a_pending_job_without_redis_has_a_null_wait_time(
    client: httpx.AsyncClient, settings: Settings, make_user: MakeUser
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user)
    async with client_for(
        settings.model_copy(update={"upstash_redis_rest_url": dead_url()})
    ) as http:
        response = await http.get(f"/api/job/{queued['jobId']}", headers=user.headers)
    assert response.status_code == 200
    assert response.json()["status"] == "pending"
    assert response.json()["waitTime"] is None


async def test_a_processing_job_shows_its_progress(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user, targetWords=1000)
    db.start(queued["jobId"], words=250)
    job = (await client.get(f"/api/job/{queued['jobId']}", headers=user.headers)).json()
    assert job["status"] == "processing"
    assert job["attempts"] == 1
    assert job["startedAt"] is not None
    assert job["progress"] == {"words": 250, "percent": 25}
    assert "waitTime" not in job


async def test_progress_never_shows_100_percent_before_completion(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user, targetWords=100)
    db.start(queued["jobId"], words=180)
    job = (await client.get(f"/api/job/{queued['jobId']}", headers=user.headers)).json()
    assert job["progress"] == {"words": 180, "percent": 99}


async def test_a_story_being_written_shows_its_text_so_far(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given a job whose worker has streamed two pieces of its story
    user = make_user(credits=1)
    queued = await _queue(client, user, title="Tide")
    story_url = f"/api/story/{queued['storyId']}"
    pending = (await client.get(story_url, headers=user.headers)).json()
    db.start(queued["jobId"])
    db.write(queued["jobId"], 0, "Once upon a tide")
    db.write(queued["jobId"], 16, " the door opened.")

    # When the reader asks for the story
    story = (await client.get(story_url, headers=user.headers)).json()

    # Then it was pending without text, and is now writing with the text so far, counted
    assert (pending["status"], pending["content"]) == ("pending", None)
    assert story["status"] == "writing"
    assert story["content"] == "Once upon a tide the door opened."
    assert story["words"] == 7
    assert story["completedAt"] is None


async def test_a_completed_job_shows_its_result_and_the_story_its_content(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user, title="Tide")
    db.start(queued["jobId"])
    db.complete(
        queued["jobId"],
        "Once upon a tide the door opened.",
        {"generationTime": 12.5, "quality": "high", "words": 7, "generator": "template"},
    )
    job = (await client.get(f"/api/job/{queued['jobId']}", headers=user.headers)).json()
    assert job["status"] == "completed"
    assert job["finishedAt"] is not None
    assert job["result"] == {"generationTime": 12.5, "quality": "high", "words": 7}
    story = (await client.get(f"/api/story/{queued['storyId']}", headers=user.headers)).json()
    assert story["status"] == "ready"
    assert story["content"] == "Once upon a tide the door opened."
    assert story["words"] == 7
    assert story["completedAt"] is not None
    assert story["jobId"] == queued["jobId"]


async def test_a_completed_job_shows_what_its_story_cost(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given a job whose first attempt used tokens and failed, and whose second one completed
    user = make_user(credits=1)
    queued = await _queue(client, user)
    db.start(queued["jobId"])
    db.record_usage(queued["jobId"], prompt_tokens=200, completion_tokens=300, cost_usd=0.0005)
    db.retry(queued["jobId"])
    db.start(queued["jobId"])
    db.record_usage(
        queued["jobId"], prompt_tokens=250, completion_tokens=1200, cost_usd=0.0011, estimated=True
    )
    db.complete(queued["jobId"], "Once upon a tide.", {"quality": "medium", "words": 4})

    # When its owner looks at it, alone and in their list
    job = (await client.get(f"/api/job/{queued['jobId']}", headers=user.headers)).json()
    listed = (await client.get("/api/jobs", headers=user.headers)).json()["jobs"]

    # Then the result shows what both attempts cost together
    usage = {"promptTokens": 450, "completionTokens": 1500, "costUsd": pytest.approx(0.0016)}
    assert job["result"]["usage"] == usage
    assert job["attempts"] == 2
    assert [item["result"]["usage"] for item in listed if item["jobId"] == queued["jobId"]] == [
        usage
    ]


async def test_a_result_without_a_generation_time_falls_back_to_the_row_times(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user)
    db.start(queued["jobId"])
    db.complete(queued["jobId"], "Three small words.", {})
    job = (await client.get(f"/api/job/{queued['jobId']}", headers=user.headers)).json()
    assert job["result"]["words"] == 3
    assert job["result"]["quality"] is None
    assert 0 <= job["result"]["generationTime"] < 60


async def test_a_result_written_with_odd_values_still_shows_the_job(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given a completed job whose result row holds values of other types (written by hand, or
    # by another version of the worker)
    user = make_user(credits=1)
    queued = await _queue(client, user)
    db.start(queued["jobId"])
    db.complete(queued["jobId"], "Four words, no more.", {"quality": 0.8, "words": 812.5})

    # When its owner looks at it and at their list, Then both answer, the odd fields unknown
    job = (await client.get(f"/api/job/{queued['jobId']}", headers=user.headers)).json()
    assert job["status"] == "completed"
    assert job["result"]["quality"] is None
    assert job["result"]["words"] == 4  # what the row itself counted
    listed = await client.get("/api/jobs", headers=user.headers)
    assert listed.status_code == 200
    assert queued["jobId"] in [listed_job["jobId"] for listed_job in listed.json()["jobs"]]


async def test_a_failed_job_shows_its_error_and_refund(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user)
    assert db.balance(user.id) == 0
    db.start(queued["jobId"])
    db.fail(queued["jobId"], code="content_policy", message="the provider refused the prompt")
    job = (await client.get(f"/api/job/{queued['jobId']}", headers=user.headers)).json()
    assert job["status"] == "failed"
    assert job["error"] == {"code": "content_policy", "message": "the provider refused the prompt"}
    assert job["refunded"] is True
    assert db.balance(user.id) == 1


async def test_a_story_exists_from_the_moment_of_enqueue(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user, title="Early", genre="mystery", targetWords=300)
    response = await client.get(f"/api/story/{queued['storyId']}", headers=user.headers)
    assert response.status_code == 200
    story = response.json()
    assert story == {
        "storyId": queued["storyId"],
        "jobId": queued["jobId"],
        "title": "Early",
        "prompt": GENERATE_BODY["prompt"],
        "genre": "mystery",
        "language": "en",
        "targetWords": 300,
        "status": "pending",
        "content": None,
        "words": None,
        "createdAt": story["createdAt"],
        "completedAt": None,
    }


async def test_other_users_jobs_and_stories_are_404_never_403(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given Alice's job
    alice, mallory = make_user(credits=1), make_user(credits=0)
    queued = await _queue(client, alice)
    # When Mallory tries to read, list or cancel it
    job = await client.get(f"/api/job/{queued['jobId']}", headers=mallory.headers)
    story = await client.get(f"/api/story/{queued['storyId']}", headers=mallory.headers)
    cancel = await client.delete(f"/api/job/{queued['jobId']}", headers=mallory.headers)
    listing = await client.get("/api/jobs", headers=mallory.headers)
    # Then it does not exist for her, and it is untouched
    assert_problem(job, 404, "not_found")
    assert_problem(story, 404, "not_found")
    assert_problem(cancel, 404, "not_found")
    assert listing.json() == {"jobs": [], "nextCursor": None}
    assert job.json()["detail"] == "no such job"
    assert db.job_status(queued["jobId"]) == "pending"


@pytest.mark.parametrize("bad_id", ["123", "not-a-uuid", "' or 1=1 --", "0" * 40])
async def test_ids_that_are_not_uuids_are_404(
    client: httpx.AsyncClient, make_user: MakeUser, bad_id: str
) -> None:
    user = make_user()
    for method, path in [
        ("GET", f"/api/job/{bad_id}"),
        ("DELETE", f"/api/job/{bad_id}"),
        ("GET", f"/api/story/{bad_id}"),
    ]:
        response = await client.request(method, path, headers=user.headers)
        assert_problem(response, 404, "not_found")


async def test_unknown_ids_are_404(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = make_user()
    assert_problem(
        await client.get(f"/api/job/{uuid.uuid4()}", headers=user.headers), 404, "not_found"
    )
    assert_problem(
        await client.get(f"/api/story/{uuid.uuid4()}", headers=user.headers), 404, "not_found"
    )


async def test_cancelling_a_pending_job_refunds_it_and_takes_it_out_of_redis(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db, fresh_redis: RedisProcess
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user)
    assert fresh_redis.client().zscore("storyq:waiting", queued["jobId"]) is not None
    response = await client.delete(f"/api/job/{queued['jobId']}", headers=user.headers)
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "cancelled"
    assert job["refunded"] is True
    assert job["finishedAt"] is not None
    assert db.balance(user.id) == 1
    assert fresh_redis.client().zscore("storyq:waiting", queued["jobId"]) is None
    story = (await client.get(f"/api/story/{queued['storyId']}", headers=user.headers)).json()
    assert story["status"] == "cancelled"


@pytest.mark.parametrize("finish", ["completed", "failed"])
async def test_finished_jobs_cannot_be_cancelled(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db, finish: str
) -> None:
    user = make_user(credits=1)
    job_id = (await _queue(client, user))["jobId"]
    db.start(job_id)
    if finish == "completed":
        db.complete(job_id, "The end.", {})
    else:
        db.fail(job_id)
    response = await client.delete(f"/api/job/{job_id}", headers=user.headers)
    assert_problem(response, 409, "job_not_cancellable")
    assert db.job_status(job_id) == finish


async def test_cancelling_a_cancelled_job_again_answers_the_same_and_refunds_once(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given a cancelled job
    user = make_user(credits=1)
    job_id = (await _queue(client, user))["jobId"]
    first = await client.delete(f"/api/job/{job_id}", headers=user.headers)

    # When it is cancelled again
    again = await client.delete(f"/api/job/{job_id}", headers=user.headers)

    # Then the same answer, one refund
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again.json()["cancelReason"] == "user"
    assert db.balance(user.id) == 1


async def test_cancelling_a_processing_job_requests_it_and_the_worker_ends_it(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    # Given a processing job
    user = make_user(credits=1)
    job_id = (await _queue(client, user))["jobId"]
    db.start(job_id, words=40)

    # When its user cancels it, twice
    first = await client.delete(f"/api/job/{job_id}", headers=user.headers)
    again = await client.delete(f"/api/job/{job_id}", headers=user.headers)

    # Then 202 with the job being cancelled, nothing refunded yet
    assert (first.status_code, again.status_code) == (202, 202)
    for answer in (first.json(), again.json()):
        assert (answer["status"], answer["cancelRequested"]) == ("processing", True)
        assert answer["progress"]["words"] == 40
    assert db.balance(user.id) == 0
    polled = (await client.get(f"/api/job/{job_id}", headers=user.headers)).json()
    assert polled["cancelRequested"] is True

    # When its worker ends it (what it does on its next heartbeat answer)
    db.run("select public.cancel_running_story_job(%s, %s)", (job_id, db.fence(job_id)))

    # Then the job is cancelled by its user, refunded once, and a DELETE now answers 200
    done = await client.delete(f"/api/job/{job_id}", headers=user.headers)
    assert done.status_code == 200
    job = done.json()
    assert (job["status"], job["cancelReason"], job["refunded"]) == ("cancelled", "user", True)
    assert db.balance(user.id) == 1
    listed = (await client.get("/api/jobs", headers=user.headers)).json()["jobs"]
    assert [(item["jobId"], item["cancelReason"]) for item in listed] == [(job_id, "user")]


async def test_another_users_processing_job_cannot_be_cancelled(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    owner, stranger = make_user(credits=1), make_user()
    job_id = (await _queue(client, owner))["jobId"]
    db.start(job_id)
    response = await client.delete(f"/api/job/{job_id}", headers=stranger.headers)
    assert_problem(response, 404, "not_found")
    assert db.value(
        "select cancel_requested_at is null from public.story_jobs where id = %s", (job_id,)
    )


async def test_cancelling_while_redis_is_down_still_cancels(
    client: httpx.AsyncClient, settings: Settings, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    queued = await _queue(client, user)
    async with client_for(
        settings.model_copy(update={"upstash_redis_rest_url": dead_url()})
    ) as http:
        response = await http.delete(f"/api/job/{queued['jobId']}", headers=user.headers)
    assert response.status_code == 200
    assert db.job_status(queued["jobId"]) == "cancelled"
    assert db.balance(user.id) == 1


async def test_jobs_are_listed_newest_first_and_paged_with_an_opaque_cursor(
    settings: Settings, make_user: MakeUser
) -> None:
    user = make_user(credits=5)
    async with client_for(settings.model_copy(update={"generate_rate_limit": 100})) as http:
        ids = [(await _queue(http, user))["jobId"] for _ in range(5)]
        first = (await http.get("/api/jobs?limit=2", headers=user.headers)).json()
        second = (
            await http.get(f"/api/jobs?limit=2&cursor={first['nextCursor']}", headers=user.headers)
        ).json()
        third = (
            await http.get(f"/api/jobs?limit=2&cursor={second['nextCursor']}", headers=user.headers)
        ).json()
    pages = [first, second, third]
    seen = [job["jobId"] for page in pages for job in page["jobs"]]
    assert seen == list(reversed(ids))
    assert [len(page["jobs"]) for page in pages] == [2, 2, 1]
    assert third["nextCursor"] is None
    assert all(job["status"] == "pending" for job in first["jobs"])
    assert "waitTime" not in first["jobs"][0]


async def test_a_page_exactly_at_the_end_has_no_next_cursor(
    client: httpx.AsyncClient, make_user: MakeUser
) -> None:
    user = make_user(credits=2)
    await _queue(client, user)
    await _queue(client, user)
    page = (await client.get("/api/jobs?limit=2", headers=user.headers)).json()
    assert len(page["jobs"]) == 2
    assert page["nextCursor"] is None


async def test_jobs_can_be_filtered_by_status(
    client: httpx.AsyncClient, make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=3)
    a = await _queue(client, user)
    b = await _queue(client, user)
    db.start(b["jobId"])
    await client.delete(f"/api/job/{a['jobId']}", headers=user.headers)
    processing = (await client.get("/api/jobs?status=processing", headers=user.headers)).json()
    cancelled = (await client.get("/api/jobs?status=cancelled", headers=user.headers)).json()
    assert [job["jobId"] for job in processing["jobs"]] == [b["jobId"]]
    assert [job["jobId"] for job in cancelled["jobs"]] == [a["jobId"]]
    assert cancelled["jobs"][0]["refunded"] is True


@pytest.mark.parametrize(
    "query", ["limit=101", "limit=0", "limit=ten", "status=done", "cursor=%%%", "cursor=bm9wZQ"]
)
async def test_bad_list_queries_are_422(
    client: httpx.AsyncClient, make_user: MakeUser, query: str
) -> None:
    user = make_user()
    response = await client.get(f"/api/jobs?{query}", headers=user.headers)
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"][0] == "query"


async def test_me_shows_the_balance(client: httpx.AsyncClient, make_user: MakeUser) -> None:
    user = make_user(credits=7)
    response = await client.get("/api/me", headers=user.headers)
    assert response.json() == {"userId": str(user.id), "credits": 7, "isAdmin": False}


async def test_reads_are_rate_limited_too(settings: Settings, make_user: MakeUser) -> None:
    user = make_user()
    async with client_for(settings.model_copy(update={"read_rate_limit": 3})) as http:
        codes = [(await http.get("/api/jobs", headers=user.headers)).status_code for _ in range(4)]
        refused = await http.get("/api/me", headers=user.headers)
    assert codes == [200, 200, 200, 429]
    assert_problem(refused, 429, "rate_limited")
    assert "Retry-After" in refused.headers
