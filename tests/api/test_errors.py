"""One error shape everywhere: problem+json with a stable code, nothing internal in a body;
and CORS for the configured origins only."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from storyq.config import Settings
from storyq_api.app import MAX_BODY_BYTES
from storyq_api.deps import Services
from tests.api.conftest import assert_problem, client_for
from tests.support.users import ApiUser

MakeUser = Callable[..., ApiUser]
ORIGIN = "http://127.0.0.1:8000"


async def test_an_unknown_path_is_a_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/nothing-here"), 404, "not_found")


async def test_a_wrong_method_is_a_405_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.put("/api/generate"), 405, "method_not_allowed")


async def test_an_unexpected_exception_is_a_bare_500(
    app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store that fails with a message full of internals
    services: Services = app.state.services

    async def explode(*_: object, **__: object) -> None:
        raise RuntimeError("SELECT secret FROM vault; redis://:hunter2@10.0.0.1:6379")

    monkeypatch.setattr(services.store.jobs, "get", explode)
    user = make_user()
    # When a route hits it
    response = await client.get(f"/api/job/{uuid.uuid4()}", headers=user.headers)
    # Then the caller learns only that it failed
    body = assert_problem(response, 500, "internal_error")
    assert "SELECT" not in response.text
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert body["detail"] == "an unexpected error occurred"


async def test_redis_errors_never_reach_the_body(
    app: FastAPI, client: httpx.AsyncClient, make_user: MakeUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upstash_redis.errors import UpstashError

    services: Services = app.state.services

    async def refuse(*_: object, **__: object) -> None:
        raise UpstashError("ERR Error running script (call to f_abc): @user_script:12")

    monkeypatch.setattr(services.dispatcher, "position", refuse)
    user = make_user(credits=1)
    queued = await client.post(
        "/api/generate", json={"prompt": "A quiet story."}, headers=user.headers
    )
    response = await client.get(f"/api/job/{queued.json()['jobId']}", headers=user.headers)
    assert response.status_code == 200
    assert response.json()["waitTime"] is None
    assert "user_script" not in response.text


async def test_cors_preflight_is_answered_for_configured_origins(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/api/generate",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "idempotency-key" in allowed
    assert "authorization" in allowed


async def test_cors_refuses_other_origins(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/api/generate",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_error_answers_carry_cors_and_expose_the_rate_limit_headers(
    settings: Settings,
) -> None:
    origin = "https://app.storyq.example"
    async with client_for(settings.model_copy(update={"cors_origins": [origin]})) as http:
        response = await http.get("/api/me", headers={"Origin": origin})
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == origin
    exposed = response.headers["access-control-expose-headers"]
    assert "Retry-After" in exposed
    assert "RateLimit-Remaining" in exposed


async def test_a_413_carries_cors_headers(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/generate", content=b"x" * (MAX_BODY_BYTES + 1), headers={"Origin": ORIGIN}
    )
    assert_problem(response, 413, "payload_too_large")
    assert response.headers["access-control-allow-origin"] == ORIGIN
