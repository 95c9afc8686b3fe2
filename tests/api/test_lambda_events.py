"""The Lambda handler, in process, with the sample events `sam local invoke -e` takes.

Each events/*.json file is loaded, given a fresh token (and real ids where it names a job or a
story), and passed to a handler built from this session's settings: Mangum, Powertools and the
whole app run as they do in Lambda, against the real local stack.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import importlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storyq.config import Settings
from storyq_api import handler as handler_module
from storyq_api.app import MAX_BODY_BYTES
from storyq_api.handler import LambdaHandler, make_handler, stage_base_path
from storyq_api.telemetry import logger
from tests.support.events import EVENTS, load_event
from tests.support.lambda_context import LambdaContext
from tests.support.sql import Db
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]

# A GET records no metric; Powertools says so on every flush.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics:UserWarning")


def under_stage(event: dict[str, Any], stage: str) -> dict[str, Any]:
    """The event as API Gateway sends it for a named stage: the stage leads the path."""
    staged = copy.deepcopy(event)
    staged["requestContext"]["stage"] = stage
    staged["rawPath"] = f"/{stage}{event['rawPath']}"
    staged["requestContext"]["http"]["path"] = staged["rawPath"]
    return staged


@pytest.fixture
def invoke(settings: Settings) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    # Mangum runs each invocation on the thread's event loop, as the Lambda runtime does.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    lambda_handler: LambdaHandler = make_handler(settings)

    def call(event: dict[str, Any]) -> dict[str, Any]:
        return lambda_handler(event, LambdaContext())

    yield call
    asyncio.set_event_loop(None)
    loop.close()


def body_of(response: dict[str, Any]) -> Any:
    raw = response["body"]
    if response.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return json.loads(raw)


def queue_job(invoke: Callable[[dict[str, Any]], dict[str, Any]], user: ApiUser) -> dict[str, Any]:
    response = invoke(load_event("generate", token=user.token))
    assert response["statusCode"] == 202, response
    answer: dict[str, Any] = body_of(response)
    return answer


def test_every_route_has_a_sample_event() -> None:
    names = {path.stem for path in EVENTS.glob("*.json") if not path.stem.startswith("worker_")}
    assert names == {
        "generate",
        "get_job",
        "get_story",
        "list_jobs",
        "cancel_job",
        "health",
        "admin_queue",
        "admin_clean",
        "admin_empty",
        "admin_retry",
        "admin_credits",
        "me",
    }


def test_health_event(invoke: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    response = invoke(load_event("health"))
    assert response["statusCode"] == 200
    assert body_of(response) == {"status": "ok", "redis": "ok", "database": "ok"}
    assert response["headers"]["content-type"] == "application/json"


def test_a_preflight_reaches_the_function_and_is_answered_there(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], settings: Settings
) -> None:
    # Given the browser's preflight for POST /api/generate, as the ANY route passes it on (the
    # template leaves CORS to the function: one set of rules)
    event = load_event("generate")
    origin = settings.cors_origins[0]
    event["requestContext"]["http"]["method"] = "OPTIONS"
    event["body"] = None
    event["headers"] = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,idempotency-key",
    }

    # When the function takes it
    response = invoke(event)

    # Then it allows the page's origin, the method and the headers the page sends
    headers = {name.lower(): value for name, value in response["headers"].items()}
    assert response["statusCode"] == 200
    assert headers["access-control-allow-origin"] == origin
    assert "POST" in headers["access-control-allow-methods"]
    assert "idempotency-key" in headers["access-control-allow-headers"].lower()


def test_generate_event_queues_and_replays_by_its_idempotency_key(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=2)
    first = invoke(load_event("generate", token=user.token))
    again = invoke(load_event("generate", token=user.token))
    assert first["statusCode"] == again["statusCode"] == 202
    assert body_of(first)["status"] == "queued"
    assert body_of(again)["jobId"] == body_of(first)["jobId"]
    assert again["headers"]["idempotent-replayed"] == "true"
    assert db.balance(user.id) == 1
    # The request id became the log correlation id
    assert logger.get_correlation_id() == "Rq1AbCdEfGhIjKl="


def test_generate_event_without_a_token_is_401(
    invoke: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    event = load_event("generate")
    del event["headers"]["authorization"]
    response = invoke(event)
    assert response["statusCode"] == 401
    assert response["headers"]["content-type"] == "application/problem+json"
    assert body_of(response)["code"] == "unauthorized"


def test_job_story_list_and_cancel_events(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser, db: Db
) -> None:
    user = make_user(credits=1)
    queued = queue_job(invoke, user)
    ids = {"job_id": queued["jobId"], "story_id": queued["storyId"]}

    job = invoke(load_event("get_job", token=user.token, **ids))
    assert job["statusCode"] == 200
    assert body_of(job)["status"] == "pending"

    story = invoke(load_event("get_story", token=user.token, **ids))
    assert story["statusCode"] == 200
    assert body_of(story)["title"] == "The Door"

    listing = invoke(load_event("list_jobs", token=user.token))
    assert listing["statusCode"] == 200
    assert [j["jobId"] for j in body_of(listing)["jobs"]] == [queued["jobId"]]

    cancel = invoke(load_event("cancel_job", token=user.token, **ids))
    assert cancel["statusCode"] == 200
    assert body_of(cancel)["status"] == "cancelled"
    assert db.balance(user.id) == 1


def test_the_sample_ids_are_404_for_a_stranger(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser
) -> None:
    user = make_user()
    for name in ("get_job", "get_story", "cancel_job"):
        response = invoke(load_event(name, token=user.token))
        assert response["statusCode"] == 404, name


def test_admin_events(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser, db: Db
) -> None:
    admin = make_user(admin=True)
    user = make_user(credits=2)
    failed = queue_job(invoke, user)
    db.start(failed["jobId"])
    db.fail(failed["jobId"])

    queue = invoke(load_event("admin_queue", token=admin.token))
    assert queue["statusCode"] == 200
    assert body_of(queue)["maxActive"] == 5

    clean = invoke(load_event("admin_clean", token=admin.token))
    assert clean["statusCode"] == 200
    assert body_of(clean)["status"] == "completed"

    retry = invoke(load_event("admin_retry", token=admin.token, job_id=failed["jobId"]))
    assert retry["statusCode"] == 200
    assert body_of(retry)["status"] == "pending"

    empty = invoke(load_event("admin_empty", token=admin.token))
    assert empty["statusCode"] == 200
    assert failed["jobId"] in body_of(empty)["jobIds"]
    assert db.job_status(failed["jobId"]) == "cancelled"


def test_me_and_admin_credits_events(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser
) -> None:
    # Given a user with 2 credits and an admin
    user, admin = make_user(credits=2), make_user(admin=True)
    # When the admin grants 10 with the sample event (its userId replaced by the user's)
    event = load_event("admin_credits", token=admin.token)
    event["body"] = json.dumps({"userId": str(user.id), "amount": 10})
    granted = invoke(event)
    assert granted["statusCode"] == 200, granted
    # Then events/me.json shows the user 12 credits
    me = invoke(load_event("me", token=user.token))
    assert me["statusCode"] == 200
    assert body_of(me) == {"userId": str(user.id), "credits": 12, "isAdmin": False}


def test_admin_events_with_a_user_token_are_403(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser
) -> None:
    user = make_user()
    for name in ("admin_queue", "admin_clean", "admin_empty", "admin_retry", "admin_credits"):
        response = invoke(load_event(name, token=user.token))
        assert response["statusCode"] == 403, name


@pytest.mark.parametrize("stage", ["dev", "prod-eu"])
def test_a_named_stage_routes_like_default(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser, stage: str
) -> None:
    user = make_user(credits=1)
    health = invoke(under_stage(load_event("health"), stage))
    assert health["statusCode"] == 200
    generate = invoke(under_stage(load_event("generate", token=user.token), stage))
    assert generate["statusCode"] == 202
    job_id = body_of(generate)["jobId"]
    job = invoke(under_stage(load_event("get_job", token=user.token, job_id=job_id), stage))
    assert body_of(job)["jobId"] == job_id


def test_a_custom_domain_without_the_stage_in_the_path_still_routes(
    invoke: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    event = load_event("health")
    event["requestContext"]["stage"] = "prod"
    assert invoke(event)["statusCode"] == 200


def test_an_explicit_base_path_wins(settings: Settings) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        lambda_handler = make_handler(settings, base_path="/v1")
        event = load_event("health")
        event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/api/health"
        assert lambda_handler(event, LambdaContext())["statusCode"] == 200
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_a_base64_body_is_decoded(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser
) -> None:
    user = make_user(credits=1)
    event = load_event("generate", token=user.token)
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    assert invoke(event)["statusCode"] == 202


def test_an_oversized_event_body_is_413(
    invoke: Callable[[dict[str, Any]], dict[str, Any]], make_user: MakeUser
) -> None:
    user = make_user(credits=1)
    event = load_event("generate", token=user.token)
    event["body"] = json.dumps({"prompt": "x" * (MAX_BODY_BYTES + 1)})
    del event["headers"]["content-length"]
    response = invoke(event)
    assert response["statusCode"] == 413
    assert body_of(response)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("stage", "path", "expected"),
    [
        ("$default", "/api/health", "/"),
        ("dev", "/dev/api/health", "/dev"),
        ("dev", "/api/health", "/"),
        ("dev", "/developer/api/health", "/"),
        (None, "/api/health", "/"),
    ],
)
def test_stage_base_path(stage: str | None, path: str, expected: str) -> None:
    event = {"rawPath": path, "requestContext": {"stage": stage, "http": {"path": path}}}
    assert stage_base_path(event) == expected


def test_the_module_handler_builds_its_app_on_first_use(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Importing the module built nothing; the first invocation builds from get_settings()
    monkeypatch.setattr(handler_module, "_handler", None)
    monkeypatch.setattr(handler_module, "get_settings", lambda: settings)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        response = handler_module.handler(load_event("health"), LambdaContext())
        assert response["statusCode"] == 200
        assert handler_module._handler is not None
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_the_core_logs_as_structured_lines_like_the_function() -> None:
    # Given the handler module loaded, as in Lambda (again: the worker's handler, loaded by
    # other tests in this process, takes the same loggers), its log lines read from a buffer
    importlib.reload(handler_module)
    (stream_handler,) = logger.handlers
    assert isinstance(stream_handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = stream_handler.setStream(buffer)
    try:
        # When the core warns through the standard library, as the operations do when Redis
        # fails after a commit
        logging.getLogger("storyq.operations").warning(
            "redis call failed after commit", extra={"operation": "enqueue"}
        )
    finally:
        stream_handler.setStream(previous)

    # Then the line is the function's JSON, with its service and the core's own fields
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["message"] == "redis call failed after commit"
    assert line["service"] == "storyq-api"
    assert line["operation"] == "enqueue"
    assert line["name"] == "storyq.operations"
