"""The kick: after an enqueue the API invokes the worker asynchronously (InvocationType=Event)
when WORKER_FUNCTION_NAME is set; a failed kick never fails the request."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator

import boto3
import httpx
import pytest
from botocore.exceptions import EndpointConnectionError
from fastapi import FastAPI
from moto import mock_aws

from storyq.config import Settings
from storyq.kick import WorkerKicker
from storyq.operations import worth_a_kick
from storyq.queue import Position
from storyq_api.app import create_app
from storyq_api.deps import Services
from storyq_local.stack.redis_server import RedisProcess
from tests.api.conftest import GENERATE_BODY
from tests.support import ids
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]
WORKER = "storyq-worker"


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return buffer.getvalue()


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        iam = boto3.client("iam")
        role = iam.create_role(
            RoleName="worker-role",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        boto3.client("lambda").create_function(
            FunctionName=WORKER,
            Runtime="python3.13",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": _zip()},
        )
        yield


class KickSpy:
    """Records every kick and what Lambda answered."""

    def __init__(self, kicker: WorkerKicker) -> None:
        self.kicker = kicker
        self.calls: list[tuple[str, bool]] = []
        self._kick = kicker.kick

    async def __call__(self, *, job_id: str) -> bool:
        accepted = await self._kick(job_id=job_id)
        self.calls.append((job_id, accepted))
        return accepted


def _spied_app(settings: Settings) -> tuple[FastAPI, KickSpy]:
    app = create_app(settings)
    services: Services = app.state.services
    spy = KickSpy(services.kicker)
    services.kicker.kick = spy  # type: ignore[method-assign]
    return app, spy


async def test_the_kicker_invokes_the_worker_as_an_event(aws: None) -> None:
    kicker = WorkerKicker(WORKER, timeout=5)
    assert await kicker.kick(job_id="6f1c2a3e-9d4b-4c8e-a2f1-0b7e5d3c9a41") is True


async def test_without_a_function_name_nothing_is_invoked() -> None:
    assert await WorkerKicker(None, timeout=5).kick(job_id="any") is False


async def test_generate_kicks_the_worker_once_per_new_job(
    aws: None, settings: Settings, make_user: MakeUser, fresh_redis: RedisProcess
) -> None:
    app, spy = _spied_app(settings.model_copy(update={"worker_function_name": WORKER}))
    user = make_user(credits=1)
    headers = {**user.headers, "Idempotency-Key": "kick-once"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        first = await http.post("/api/generate", json=GENERATE_BODY, headers=headers)
        replay = await http.post("/api/generate", json=GENERATE_BODY, headers=headers)
    assert first.status_code == replay.status_code == 202
    assert spy.calls == [(first.json()["jobId"], True)]


async def test_a_failed_kick_still_answers_202(settings: Settings, make_user: MakeUser) -> None:
    # Given a Lambda API that cannot be reached
    app, spy = _spied_app(settings.model_copy(update={"worker_function_name": WORKER}))

    def unreachable(payload: bytes) -> int:
        raise EndpointConnectionError(endpoint_url="https://lambda.eu-central-1.amazonaws.com")

    spy.kicker._invoke = unreachable  # type: ignore[method-assign]
    user = make_user(credits=1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        response = await http.post("/api/generate", json=GENERATE_BODY, headers=user.headers)
    # Then the job is queued all the same; the sweep will start it
    assert response.status_code == 202
    assert spy.calls == [(response.json()["jobId"], False)]


async def test_no_kick_while_every_slot_is_taken(
    aws: None, settings: Settings, make_user: MakeUser, fresh_redis: RedisProcess
) -> None:
    # Given five generations running (every slot leased)
    app, spy = _spied_app(settings.model_copy(update={"worker_function_name": WORKER}))
    services: Services = app.state.services
    await services.dispatcher.rebuild([])
    for index in range(settings.max_active_jobs):
        await services.dispatcher.enqueue(
            ids.job(f"running-{index}"), user_id=ids.user("someone"), fence=index + 1
        )
    assert len(await services.dispatcher.claim(5, lease_seconds=60)) == 5

    # When a user queues a story
    user = make_user(credits=1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
    ) as http:
        queued = await http.post("/api/generate", json=GENERATE_BODY, headers=user.headers)

    # Then it waits for a slot without waking another worker that could not start it
    assert queued.status_code == 202
    assert queued.json()["estimatedWaitTime"]["activeJobs"] == 5
    assert spy.calls == []
    fresh_redis.client().flushall()  # leave no leases behind for the session's other tests


@pytest.mark.parametrize(
    ("position", "active", "kick"),
    [(0, 0, True), (0, 4, True), (1, 4, False), (0, 5, False), (3, 1, True), (4, 1, False)],
)
def test_worth_a_kick(position: int, active: int, kick: bool) -> None:
    where = Position(
        position=position, queue_length=position + 1, active_jobs=active, estimated_minutes=5
    )
    assert worth_a_kick(where, max_active=5) is kick
    assert worth_a_kick(None, max_active=5) is True
