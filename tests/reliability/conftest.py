"""The reliability suite's own stack, every part a real process that a test may kill: a private
PostgreSQL cluster (stopped and started for real), a private redis-server, both emulators and
the API each served by uvicorn in its own process, and worker processes.

Nothing is shared with the other suites: workers sweep every pending job of their database, and
this suite stops the database server itself. Timings are short (3 s leases, 0.5 s
generations) so that a death is noticed, and the whole suite runs, within CI's budget.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from storyq_local.tokens import access_token_claims, sign
from storyq_local.users import ensure_user
from tests.conftest import JWT_SECRET, UPSTASH_TOKEN
from tests.reliability import results
from tests.reliability.facts import (
    finished_job_ids,
    install_audit,
    pending_count,
    redis_residue,
)
from tests.reliability.stack import (
    LOG_DIR,
    PrivatePostgres,
    ServedApp,
    WorkerProcess,
    private_postgres_available,
)
from tests.support.databases import create_scratch_database
from tests.support.processes import RedisProcess, wait_until
from tests.support.users import ApiUser

MAX_ACTIVE_JOBS = 5
MAX_ATTEMPTS = 3
TIMINGS: dict[str, str] = {
    "LEASE_SECONDS": "3",
    "GENERATION_DELAY_SECONDS": "0.5",
    "GENERATION_TIMEOUT_SECONDS": "30",
    "RETRY_BASE_SECONDS": "0.05",
    "RETRY_MAX_SECONDS": "0.3",
    "WORKER_POLL_SECONDS": "0.2",
    "WORKER_TIME_MARGIN_SECONDS": "1",
    "HTTP_TIMEOUT_SECONDS": "5",
}


@dataclass
class Stack:
    postgres: PrivatePostgres
    database_url: str
    redis: RedisProcess
    upstash: ServedApp
    supabase: ServedApp
    api: ServedApp
    env: dict[str, str]
    issuer: str

    def worker_env(self, **overrides: str) -> dict[str, str]:
        return {**self.env, **TIMINGS, "GENERATOR": "template", **overrides}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if not private_postgres_available():
        pytest.skip("initdb/pg_ctl are not installed (make test installs PostgreSQL)")
    postgres = PrivatePostgres().init()
    redis = RedisProcess().start()
    served: list[ServedApp] = []
    try:
        database_url = create_scratch_database(postgres.url, prefix="storyq_reliability")
        install_audit(database_url)
        common = {
            "STORYQ_ENV": "dev",
            "UPSTASH_REDIS_REST_TOKEN": UPSTASH_TOKEN,
            "UPSTASH_REST_RETRIES": "0",
            "SUPABASE_JWT_SECRET": JWT_SECRET,
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_METRICS_DISABLED": "1",
            "MAX_ACTIVE_JOBS": str(MAX_ACTIVE_JOBS),
            "MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        }
        upstash = ServedApp("upstash", {**common, "RELIABILITY_REDIS_URL": redis.url}).start()
        served.append(upstash)
        supabase = ServedApp(
            "supabase", {**common, "RELIABILITY_DATABASE_URL": database_url}
        ).start()
        served.append(supabase)
        issuer = f"{supabase.url}/auth/v1"
        env = {
            **common,
            "UPSTASH_REDIS_REST_URL": upstash.url,
            "SUPABASE_URL": supabase.url,
            "SUPABASE_JWT_ISSUER": issuer,
        }
        api_env = {
            **env,
            "HTTP_TIMEOUT_SECONDS": "5",
            # The load test is about credits and the generation cap, not the rate limiter.
            "GENERATE_RATE_LIMIT": "1000",
            "READ_RATE_LIMIT": "100000",
        }
        api = ServedApp("api", api_env).start()
        served.append(api)
        yield Stack(
            postgres=postgres,
            database_url=database_url,
            redis=redis,
            upstash=upstash,
            supabase=supabase,
            api=api,
            env=env,
            issuer=issuer,
        )
    finally:
        for app in reversed(served):
            app.stop()
        redis.stop()
        postgres.destroy()
        shutil.rmtree(LOG_DIR, ignore_errors=True)


@dataclass
class Workers:
    """Worker processes of one test; all stopped when it ends."""

    stack: Stack
    started: list[WorkerProcess] = field(default_factory=list)

    def start(
        self, count: int = 1, *, concurrency: int = MAX_ACTIVE_JOBS, **env: str
    ) -> list[WorkerProcess]:
        new = [
            WorkerProcess(self.stack.worker_env(**env), concurrency=concurrency).start()
            for _ in range(count)
        ]
        self.started += new
        return new

    def alive(self) -> list[WorkerProcess]:
        return [worker for worker in self.started if worker.alive]

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


@pytest.fixture
def workers(stack: Stack) -> Iterator[Workers]:
    pool = Workers(stack)
    yield pool
    pool.stop_all()


def token_for(stack: Stack, user_id: uuid.UUID, *, admin: bool = False, **claims: Any) -> str:
    """A Supabase-shaped HS256 access token; `claims` replace or add claims."""
    payload = access_token_claims(
        user_id=user_id, issuer=stack.issuer, expires_in=3600, admin=admin
    )
    payload.update(claims)
    return sign(payload, JWT_SECRET)


MakeUser = Callable[..., ApiUser]


@pytest.fixture
def make_user(stack: Stack) -> MakeUser:
    """A signed-up user holding `credits`, with a valid token."""

    def make(credits: int = 0, *, admin: bool = False) -> ApiUser:
        user_id = uuid.uuid4()
        ensure_user(stack.database_url, user_id)
        if credits:
            with psycopg.connect(stack.database_url, autocommit=True) as conn:
                conn.execute("select public.grant_credits(%s, %s)", (user_id, credits))
        return ApiUser(id=user_id, token=token_for(stack, user_id, admin=admin))

    return make


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api.url, timeout=30) as client:
        yield client


def queue_story(api: httpx.Client, user: ApiUser, prompt: str = "a storm collector") -> str:
    """POST /api/generate as `user`; the job id of the 202."""
    response = api.post(
        "/api/generate", json={"prompt": prompt, "targetWords": 200}, headers=user.headers
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["jobId"]
    return job_id


def drain_leftovers(stack: Stack, workers: Workers, *, timeout: float = 60) -> None:
    """Let workers finish whatever earlier tests left pending, so a scenario counts its own."""
    if pending_count(stack.database_url) == 0:
        return
    workers.start(1)
    wait_until(lambda: pending_count(stack.database_url) == 0, timeout=timeout, interval=0.2)
    workers.stop_all()
    workers.started.clear()


def assert_no_residue(stack: Stack, *, timeout: float = 60) -> int:
    """Wait until Redis holds nothing for any job Postgres has finished (a worker killed
    between Postgres and Redis leaves a lease that the sweep clears once it lapses); how many
    residual entries the last scan found (0)."""
    finished = finished_job_ids(stack.database_url)
    client = stack.redis.client()
    left: dict[str, list[str]] = {}

    def clean() -> bool:
        nonlocal left
        left = redis_residue(client, finished)
        return not left

    try:
        wait_until(clean, timeout=timeout, interval=0.5)
    except TimeoutError:
        raise AssertionError(f"Redis still holds finished jobs: {left}") from None
    return sum(len(names) for names in left.values())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in item.nodeid:
            item.add_marker(pytest.mark.reliability)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    results.write()
