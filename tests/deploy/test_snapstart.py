"""SnapStart: a restored copy of a function re-reads its secrets and makes new clients.

The runtime's hooks are run here as Lambda runs them (snapshot_restore_py's registries, filled
when the handler modules are imported), around a secret rotated in SSM (moto) while the
snapshot waits: the API answers with the new secret, the worker's settings hold it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from snapshot_restore_py import get_after_restore, get_before_snapshot

from storyq.config import Settings, get_settings
from storyq_api import handler as api_handler
from storyq_local.stack.tokens import sign
from storyq_worker import handler as worker_handler
from tests.support.lambda_context import LambdaContext
from tests.support.stack import JWT_SECRET, UPSTASH_TOKEN

REGION = "eu-central-1"
EVENTS = Path(__file__).resolve().parents[2] / "events"


def _run(hooks: list[Any]) -> None:
    for func, args, kwargs in hooks:
        func(*args, **kwargs)


class Ssm:
    """The function's SecureString parameters under its own path."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.client = boto3.client("ssm", region_name=REGION)

    def put(self, name: str, value: str) -> None:
        self.client.put_parameter(
            Name=f"{self.path}/{name}", Value=value, Type="SecureString", Overwrite=True
        )


@pytest.fixture
def prod_function(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Ssm]:
    """A prod function's environment (only the path of its secrets) against the session's
    emulators, with a stale Upstash token in SSM."""
    monkeypatch.chdir(tmp_path)  # no .env
    path = f"/storyq/snapstart-{uuid.uuid4().hex[:8]}"  # Powertools caches by name
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "STORYQ_ENV": "prod",
        "STORYQ_SECRETS_PATH": path,
        "UPSTASH_REDIS_REST_URL": settings.upstash_redis_rest_url,
        "UPSTASH_REST_RETRIES": "0",
        "SUPABASE_URL": settings.supabase_url,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        ssm = Ssm(path)
        # A service-role key the local Supabase accepts, but not the development one (prod
        # refuses that), and a JWT secret of the project's own.
        now = int(time.time())
        claims = {"role": "service_role", "iss": "supabase", "iat": now, "exp": now + 3600}
        ssm.put("supabase-service-role-key", sign(claims, JWT_SECRET))
        ssm.put("supabase-jwt-secret", "a-project-jwt-secret-of-at-least-32-characters")
        ssm.put("upstash-token", "a-token-rotated-away")
        get_settings.cache_clear()
        try:
            yield ssm
        finally:
            get_settings.cache_clear()
            api_handler._forget_app()


def _health() -> dict[str, Any]:
    event = json.loads((EVENTS / "health.json").read_text())
    answer = api_handler.handler(event, LambdaContext())
    body: dict[str, Any] = json.loads(answer["body"])
    return body


def test_a_restored_api_reads_the_rotated_secret_and_opens_new_clients(
    prod_function: Ssm,
) -> None:
    # Given the API's init, which served with the secret of the moment (a stale Upstash token)
    assert _health()["redis"] == "down"

    # When Lambda snapshots it, the token is rotated meanwhile, and a copy is restored
    _run(get_before_snapshot())
    prod_function.put("upstash-token", UPSTASH_TOKEN)
    _run(get_after_restore())

    # Then the restored copy reads the new token and reaches Redis with it
    assert get_settings().upstash_redis_rest_token.get_secret_value() == UPSTASH_TOKEN
    assert _health() == {"status": "ok", "redis": "ok", "database": "ok"}


def test_a_snapshot_holds_no_settings_secrets_or_app(prod_function: Ssm) -> None:
    # Given an API that has built its app and read its settings
    _health()
    assert get_settings.cache_info().currsize == 1

    # When Lambda is about to snapshot it
    _run(get_before_snapshot())

    # Then nothing read from SSM or built on it is left to be frozen
    assert get_settings.cache_info().currsize == 0
    assert api_handler._handler is None


def test_a_restored_worker_holds_the_rotated_secret(prod_function: Ssm) -> None:
    # Given a worker whose init read its settings
    before = get_settings()
    assert worker_handler.lambda_handler is not None

    # When it is snapshotted, the token rotated, and a copy restored
    _run(get_before_snapshot())
    prod_function.put("upstash-token", "the-rotated-upstash-token")
    _run(get_after_restore())

    # Then the restored copy's settings are new and hold the new token
    after = get_settings()
    assert after is not before
    assert after.upstash_redis_rest_token.get_secret_value() == "the-rotated-upstash-token"
