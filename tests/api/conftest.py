"""Fixtures of the API tests: an app over this session's emulators and an HTTP client (users and
direct SQL come from the root conftest: `make_user`, `db`).

Postgres keeps its rows for the whole session, so every test makes its own users; Redis may be
flushed by a test that needs exact queue positions (`fresh_redis`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from storyq.config import Settings
from storyq_api.app import create_app
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.servers import free_port


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


def client_for(settings: Settings) -> httpx.AsyncClient:
    """A client over an app built from other settings (a dead dependency, a lower limit)."""
    transport = httpx.ASGITransport(app=create_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


def dead_url() -> str:
    """An HTTP URL on loopback where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def fresh_redis(redis_process: RedisProcess) -> RedisProcess:
    """An empty Redis for tests that read exact queue positions."""
    redis_process.client().flushall()
    return redis_process


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return body


GENERATE_BODY: dict[str, Any] = {"prompt": "A lighthouse keeper finds a door in the sea."}
