"""The `sam build` output is complete: each function, with only its layer on the path, imports
and handles an event file against the local stack (what `sam local invoke -e` would do)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from storyq.config import Settings
from storyq_local.config import project_root
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.users import dev_token, ensure_user
from tests.support.stack import private_stack

ROOT = project_root()
BUILD = ROOT / ".aws-sam" / "build"
EVENTS = ROOT / "events"
INVOKER = Path(__file__).with_name("invoke_built.py")


@pytest.fixture(scope="module")
def built() -> Path:
    if not (BUILD / "template.yaml").is_file():
        pytest.fail("no .aws-sam/build: `make sam-build` (part of `make test`) builds it first")
    return BUILD


@pytest.fixture(scope="module")
def stack(postgres_server_url: str) -> Iterator[LocalStack]:
    with private_stack(postgres_server_url, prefix="storyq_built") as running:
        yield running


def _invoke(
    built: Path, stack: LocalStack, *, function: str, target: str, event: dict[str, Any]
) -> dict[str, Any]:
    # The base interpreter, not the venv: the build must bring every package itself.
    python = getattr(sys, "_base_executable", sys.executable)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONNOUSERSITE": "1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "StoryqBuilt",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        **stack.env(),
    }
    completed = subprocess.run(
        [
            python,
            "-s",
            str(INVOKER),
            str(built / function),
            str(built / "CoreLayer" / "python"),
            target,
            json.dumps(event),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=built,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    answer: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    assert answer["storyq_from"].startswith(str(built / "CoreLayer")), answer["storyq_from"]
    return answer


def _event(name: str, *, token: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    return event


def _settings(stack: LocalStack) -> Settings:
    return Settings(_env_file=None, **{k.lower(): v for k, v in stack.env().items()})  # type: ignore[call-arg, arg-type]


def test_built_api_answers_health(built: Path, stack: LocalStack) -> None:
    answer = _invoke(
        built,
        stack,
        function="ApiFunction",
        target="storyq_api.handler:handler",
        event=_event("health.json"),
    )
    assert answer["result"]["statusCode"] == 200
    assert json.loads(answer["result"]["body"]) == {"status": "ok", "redis": "ok", "database": "ok"}


def test_built_api_queues_and_built_worker_generates(built: Path, stack: LocalStack) -> None:
    # Given a user with a credit
    user = uuid.uuid4()
    ensure_user(stack.database_url, user)
    with psycopg.connect(stack.database_url) as conn:
        conn.execute("select public.grant_credits(%s, 1)", (user,))
    token = dev_token(_settings(stack), database_url=None, user_id=user)

    # When the built API takes events/generate.json
    answer = _invoke(
        built,
        stack,
        function="ApiFunction",
        target="storyq_api.handler:handler",
        event=_event("generate.json", token=token),
    )
    assert answer["result"]["statusCode"] == 202, answer["result"]["body"]
    job_id = json.loads(answer["result"]["body"])["jobId"]

    # And the built worker takes events/worker_schedule.json
    summary = _invoke(
        built,
        stack,
        function="WorkerFunction",
        target="storyq_worker.handler:lambda_handler",
        event=_event("worker_schedule.json"),
    )["result"]

    # Then the job it queued is completed and its story written
    assert summary["completed"] >= 1, summary
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "select j.status, length(s.content) from public.story_jobs j"
            " join public.stories s on s.id = j.story_id where j.id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    assert row[0] == "completed"
    assert row[1] > 100
