"""Every events/*.json through `sam local invoke`, as the README tells a developer to run them:
the built functions in Lambda's runtime emulation (a container per invocation, the Runtime
Interface Emulator, awslambdaric, boto3 as the managed runtime ships it), against a private
stack reached over Docker's bridge. Each answer is asserted.

A container per invocation costs about 4 s, so each test makes the few calls it needs.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storyq_local.stack.builder import LocalStack
from storyq_local.stack.sam import API_FUNCTION, WORKER_FUNCTION, SamLocal, SamSpec
from storyq_local.stack.users import ensure_user
from tests.support.events import EVENTS, load_event
from tests.support.sql import Db
from tests.support.stack import sam_stack
from tests.support.users import sign_up

SAMPLE_USER_ID = "0b7e5d3c-9a41-4c8e-a2f1-6f1c2a3e9d4b"  # events/admin_credits.json's userId


@pytest.fixture(scope="module")
def functions(postgres_server_url: str, lambda_image: str) -> Iterator[tuple[LocalStack, SamLocal]]:
    # serve=False: no start-api/start-lambda, and no kick (the tests invoke the worker)
    with sam_stack(
        postgres_server_url,
        lambda_image,
        prefix="storyq_sam_invoke",
        settings={"generation_delay_seconds": 0.5},
        sam=SamSpec(serve=False),
    ) as running:
        yield running


@pytest.fixture
def sam(functions: tuple[LocalStack, SamLocal]) -> SamLocal:
    return functions[1]


@pytest.fixture
def db(functions: tuple[LocalStack, SamLocal]) -> Db:
    return Db(functions[0].database_url)


def api(sam: SamLocal, name: str, **kwargs: Any) -> tuple[int, Any]:
    """`sam local invoke ApiFunction -e events/<name>.json`: the status and the decoded body."""
    answer = sam.invoke_cli(API_FUNCTION, load_event(name, **kwargs))
    raw = answer["body"]
    if answer.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return answer["statusCode"], json.loads(raw) if raw else None


def test_every_event_file_is_covered_here() -> None:
    names = {path.stem for path in EVENTS.glob("*.json")}
    covered = {
        "health",
        "me",
        "generate",
        "get_job",
        "get_story",
        "list_jobs",
        "cancel_job",
        "admin_queue",
        "admin_credits",
        "admin_retry",
        "admin_clean",
        "admin_empty",
        "worker_kick",
        "worker_schedule",
    }
    assert names == covered


def test_health(sam: SamLocal) -> None:
    assert api(sam, "health") == (200, {"status": "ok", "redis": "ok", "database": "ok"})


def test_generate_read_list_cancel(sam: SamLocal, db: Db) -> None:
    user = sign_up(db, credits=2)
    status, queued = api(sam, "generate", token=user.token)
    assert status == 202, queued
    assert queued["status"] == "queued"
    ids = {"job_id": queued["jobId"], "story_id": queued["storyId"]}

    status, job = api(sam, "get_job", token=user.token, **ids)
    assert (status, job["status"]) == (200, "pending")

    status, story = api(sam, "get_story", token=user.token, **ids)
    assert (status, story["title"]) == (200, "The Door")

    status, listing = api(sam, "list_jobs", token=user.token)
    assert status == 200
    assert [j["jobId"] for j in listing["jobs"]] == [queued["jobId"]]

    status, cancelled = api(sam, "cancel_job", token=user.token, **ids)
    assert (status, cancelled["status"]) == (200, "cancelled")

    status, me = api(sam, "me", token=user.token)
    assert status == 200
    assert me == {"userId": str(user.id), "credits": 2, "isAdmin": False}


def test_worker_kick_and_schedule_write_what_waits(sam: SamLocal, db: Db) -> None:
    # (two users: generate.json carries an Idempotency-Key, so a user's second one replays)
    user, other = sign_up(db, credits=1), sign_up(db, credits=1)
    first = api(sam, "generate", token=user.token)[1]["jobId"]

    kicked = sam.invoke_cli(WORKER_FUNCTION, json.loads((EVENTS / "worker_kick.json").read_text()))
    assert kicked["trigger"] == "kick"
    assert kicked["completed"] >= 1, kicked
    assert db.job_status(first) == "completed"

    second = api(sam, "generate", token=other.token)[1]["jobId"]
    swept = sam.invoke_cli(
        WORKER_FUNCTION, json.loads((EVENTS / "worker_schedule.json").read_text())
    )
    assert swept["trigger"] == "schedule"
    assert swept["completed"] >= 1, swept
    assert db.job_status(second) == "completed"
    assert db.balance(user.id) == db.balance(other.id) == 0


def test_admin_events(sam: SamLocal, db: Db) -> None:
    admin = sign_up(db, admin=True)
    user = sign_up(db, credits=2)
    failed = api(sam, "generate", token=user.token)[1]["jobId"]
    db.start(failed)
    db.fail(failed)

    status, queue = api(sam, "admin_queue", token=admin.token)
    assert status == 200
    assert queue["maxActive"] == 5

    status, cleaned = api(sam, "admin_clean", token=admin.token)
    assert (status, cleaned["status"]) == (200, "completed")

    status, retried = api(sam, "admin_retry", token=admin.token, job_id=failed)
    assert (status, retried["status"]) == (200, "pending")

    status, emptied = api(sam, "admin_empty", token=admin.token)
    assert status == 200
    assert failed in emptied["jobIds"]
    assert db.job_status(failed) == "cancelled"

    # admin_credits.json grants its sample user 10 credits
    ensure_user(db.url, uuid.UUID(SAMPLE_USER_ID))
    before = db.balance(uuid.UUID(SAMPLE_USER_ID))
    status, granted = api(sam, "admin_credits", token=admin.token)
    assert status == 200, granted
    assert granted["credits"] == before + 10
    assert db.balance(uuid.UUID(SAMPLE_USER_ID)) == before + 10
