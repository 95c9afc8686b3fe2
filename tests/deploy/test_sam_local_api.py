"""The HTTP contract through `sam local start-api`, with the worker behind `sam local
start-lambda`: API Gateway's event plumbing, the API function in its warm container, and the
API's kick reaching the worker through the Lambda Invoke API (boto3 in the container, pointed
at start-lambda by AWS_ENDPOINT_URL_LAMBDA). There is no schedule here: a job that runs was
started by the kick. The test's own settings (a 3 s generation, one slot) reach the containers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from storyq_local.stack.builder import LocalStack
from storyq_local.stack.sam import SamLocal
from storyq_local.stack.servers import wait_until
from tests.support.sql import Db
from tests.support.stack import sam_stack
from tests.support.users import ApiUser, bearer, sign_up

SETTINGS = {
    "generation_delay_seconds": 3.0,
    "max_active_jobs": 1,
    "lease_seconds": 3.0,
    "generate_rate_limit": 100,
    "read_rate_limit": 5000,
}


@pytest.fixture(scope="module")
def running(postgres_server_url: str, lambda_image: str) -> Iterator[tuple[LocalStack, SamLocal]]:
    with sam_stack(
        postgres_server_url, lambda_image, prefix="storyq_sam_api", settings=SETTINGS
    ) as both:
        yield both


@pytest.fixture
def db(running: tuple[LocalStack, SamLocal]) -> Db:
    return Db(running[0].database_url)


@pytest.fixture
def client(running: tuple[LocalStack, SamLocal]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running[1].api_url, timeout=60) as http:
        yield http


def generate(client: httpx.Client, user: ApiUser, prompt: str) -> httpx.Response:
    return client.post(
        "/api/generate", json={"prompt": prompt, "targetWords": 300}, headers=bearer(user.token)
    )


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    return body


def test_generate_is_kicked_through_start_lambda_and_written(client: httpx.Client, db: Db) -> None:
    # Given a user with two credits
    user = sign_up(db, credits=2)

    # When they queue two stories (one slot: the second waits)
    first = generate(client, user, "A lighthouse keeper who collects storms")
    second = generate(client, user, "Two foxes run a night bakery")
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    first_id, second_id = first.json()["jobId"], second.json()["jobId"]
    assert first.json()["creditsRemaining"] == 1

    # Then the first is taken at once (the kick: no schedule runs here) and seen processing
    seen: list[str] = []

    def status_of(job_id: str) -> str:
        answer = client.get(f"/api/job/{job_id}", headers=bearer(user.token))
        assert answer.status_code == 200, answer.text
        status: str = answer.json()["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        return status

    wait_until(lambda: status_of(first_id) == "processing", timeout=60, what="first processing")
    # ... while the second waits for the only slot, and can be cancelled and refunded
    assert status_of(second_id) == "pending"
    cancelled = client.delete(f"/api/job/{second_id}", headers=bearer(user.token))
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")

    # And the first is written within its 3 s generation (and the worker's own start)
    wait_until(lambda: status_of(first_id) == "completed", timeout=90, what="first completed")
    assert seen[-2:] == ["processing", "completed"]
    story_id = first.json()["storyId"]
    story = client.get(f"/api/story/{story_id}", headers=bearer(user.token)).json()
    assert len(story["content"].split()) >= 150
    me = client.get("/api/me", headers=bearer(user.token)).json()
    assert me["credits"] == 1
    assert db.balance(user.id) == 1


def test_no_token_is_401(client: httpx.Client) -> None:
    answer = client.get("/api/me")
    assert answer.status_code == 401
    assert problem(answer)["code"] == "unauthorized"
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_no_credits_is_402_and_nothing_is_queued(client: httpx.Client, db: Db) -> None:
    user = sign_up(db)
    answer = generate(client, user, "A story nobody paid for")
    assert answer.status_code == 402
    assert problem(answer)["code"] == "insufficient_credits"
    listing = client.get("/api/jobs", headers=bearer(user.token)).json()
    assert listing["jobs"] == []


def test_invalid_input_is_422_field_by_field_and_debits_nothing(
    client: httpx.Client, db: Db
) -> None:
    user = sign_up(db, credits=1)
    answer = client.post(
        "/api/generate",
        json={"prompt": "", "targetWords": -5},
        headers=bearer(user.token),
    )
    assert answer.status_code == 422
    body = problem(answer)
    assert body["code"] == "validation_error"
    fields = {tuple(error["loc"]) for error in body["errors"]}
    assert ("body", "prompt") in fields
    assert ("body", "targetWords") in fields
    assert db.balance(user.id) == 1


def test_containers_stay_warm(running: tuple[LocalStack, SamLocal], client: httpx.Client) -> None:
    # Given the containers this run has
    sam = running[1]
    before = set(sam.containers())
    assert before

    # When a client polls ten times
    for _ in range(10):
        assert client.get("/api/health").status_code == 200

    # Then every answer came from the same containers (no new one, no cold start per call)
    assert set(sam.containers()) == before, "a container was made per request"
