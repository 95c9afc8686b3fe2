"""Fixtures of the API tests: an app over this session's emulators, an HTTP client, fresh users
with tokens and credits, and the SQL a worker would run to move a job along.

Postgres keeps its rows for the whole session, so every test makes its own users; Redis may be
flushed by a test that needs exact queue positions (`fresh_redis`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg.types.json import Jsonb

from storyq.config import Settings
from storyq_api.app import create_app
from storyq_local.servers import free_port
from storyq_local.tokens import access_token_claims, sign
from storyq_local.users import ensure_user
from tests.conftest import JWT_SECRET
from tests.support.processes import RedisProcess
from tests.support.users import ApiUser

ISSUER = "http://127.0.0.1:54321/auth/v1"
# Db.start stands in for a worker on the session's shared database, which holds every API
# test's jobs: its starts are not held back by the global cap (tested in test_store_admin), and
# count other attempts as live for an hour, so they never take another test's job away.
START_ANY_CAP = 1_000_000
START_LIVE_SECONDS = 3600.0


def token_for(
    user_id: uuid.UUID,
    *,
    admin: bool = False,
    secret: str = JWT_SECRET,
    expires_in: int = 3600,
    **overrides: Any,
) -> str:
    """A Supabase-shaped HS256 access token; `overrides` replace or add claims."""
    claims = access_token_claims(user_id=user_id, issuer=ISSUER, expires_in=expires_in, admin=admin)
    claims.update(overrides)
    return sign(claims, secret)


class Db:
    """Direct SQL on the scratch database: what a worker or Supabase Auth would do."""

    def __init__(self, url: str) -> None:
        self.url = url

    def run(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def value(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self.run(query, params)
        return rows[0][0] if rows else None

    def grant(self, user_id: uuid.UUID, amount: int) -> None:
        self.run("select public.grant_credits(%s, %s)", (user_id, amount))

    def balance(self, user_id: uuid.UUID) -> int:
        return int(self.value("select public.credit_balance(%s)", (user_id,)))

    def job_status(self, job_id: str) -> str:
        return str(self.value("select status from public.story_jobs where id = %s", (job_id,)))

    def fence(self, job_id: str) -> int:
        """The token of the job's next (pending) or running attempt."""
        return int(self.value("select fence from public.story_jobs where id = %s", (job_id,)))

    def start(self, job_id: str, *, words: int | None = None) -> None:
        """pending → processing under the job's current fence, optionally with progress."""
        fence = self.fence(job_id)
        started = self.value(
            "select public.start_story_job(%s, %s, %s, %s)",
            (job_id, fence, START_ANY_CAP, START_LIVE_SECONDS),
        )
        assert started["started"], started
        if words is not None:
            self.run("select public.heartbeat_story_job(%s, %s, %s)", (job_id, fence, words))

    def complete(self, job_id: str, content: str, result: dict[str, Any]) -> None:
        self.run(
            "select public.complete_story_job(%s, %s, %s, null, %s)",
            (job_id, self.fence(job_id), content, Jsonb(result)),
        )

    def fail(self, job_id: str, *, code: str = "generator_error", message: str = "boom") -> None:
        self.run(
            "select public.fail_story_job(%s, %s, %s, %s, false)",
            (job_id, self.fence(job_id), code, message),
        )


@pytest.fixture
def db(database_url: str) -> Db:
    return Db(database_url)


@pytest.fixture
def make_user(db: Db) -> Callable[..., ApiUser]:
    """A new user in auth.users with `credits` granted and a valid token."""

    def make(credits: int = 0, *, admin: bool = False) -> ApiUser:
        user_id = uuid.uuid4()
        ensure_user(db.url, user_id)
        if credits:
            db.grant(user_id, credits)
        return ApiUser(id=user_id, token=token_for(user_id, admin=admin))

    return make


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
