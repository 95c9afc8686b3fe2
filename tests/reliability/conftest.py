"""The reliability suite's own stack, every part a real process that a test may kill: a private
PostgreSQL cluster (stopped and started for real), a private redis-server, both emulators and
the API each served by uvicorn in its own process, and worker processes.

Nothing is shared with the other suites: workers sweep every pending job of their database, and
this suite stops the database server itself. Timings are short (3 s leases, 0.5 s
generations) so that a death is noticed, and the whole suite runs, within CI's budget.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from storyq_local.stack.builder import ApiSpec, DatabaseSpec, EmulatorSpec, StackSpec, start_stack
from storyq_local.stack.postgres import PrivatePostgres, private_postgres_available
from storyq_local.stack.processes import ServedProcess
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.servers import wait_until
from storyq_local.stack.tokens import access_token_claims, sign
from storyq_local.stack.users import ensure_user
from storyq_local.stack.workers import WorkerProcess
from tests.reliability import results
from tests.reliability.facts import (
    finished_job_ids,
    install_audit,
    pending_count,
    redis_residue,
)
from tests.support.stack import JWT_SECRET, UPSTASH_TOKEN
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


# Quiet processes: Powertools logs errors only, and sends no traces or metrics.
PROCESS_ENV = {
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_DISABLED": "1",
}
# For the API and the workers (which add TIMINGS).
SETTINGS: dict[str, Any] = {
    "upstash_rest_retries": 0,
    "max_active_jobs": MAX_ACTIVE_JOBS,
    "max_attempts": MAX_ATTEMPTS,
    "http_timeout_seconds": 5,
    # The load test is about credits and the generation cap, not the rate limiter.
    "generate_rate_limit": 1000,
    "read_rate_limit": 100000,
}


@dataclass
class Stack:
    postgres: PrivatePostgres
    database_url: str
    redis: RedisProcess
    upstash: ServedProcess
    supabase: ServedProcess
    api: ServedProcess
    env: dict[str, str]
    issuer: str
    log_dir: Path

    def worker_env(self, **overrides: str) -> dict[str, str]:
        return {**self.env, **TIMINGS, "GENERATOR": "template", **overrides}


def reliability_spec() -> StackSpec:
    """Every part in a process of its own; the database on a cluster of our own."""
    return StackSpec(
        database=DatabaseSpec(scratch_prefix="storyq_reliability", private_cluster=True),
        # As many connections as the API's client may open (100), so the load test measures
        # the API and not a pool queue; a pool timeout is a known 500 (test_store_errors.py).
        emulators=EmulatorSpec(where="process", supabase_pool_size=100),
        api=ApiSpec(where="process"),
        upstash_token=UPSTASH_TOKEN,
        jwt_secret=JWT_SECRET,
        settings=SETTINGS,
        check_issuer=True,
        process_env=PROCESS_ENV,
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    if not private_postgres_available():
        pytest.skip("initdb/pg_ctl are not installed (make test installs PostgreSQL)")
    with start_stack(reliability_spec()) as running:
        install_audit(running.database_url)
        postgres, redis = running.postgres, running.redis
        upstash, supabase, api = running.upstash, running.supabase, running.api
        assert isinstance(postgres, PrivatePostgres)
        assert isinstance(redis, RedisProcess)
        assert isinstance(upstash, ServedProcess)
        assert isinstance(supabase, ServedProcess)
        assert isinstance(api, ServedProcess)
        yield Stack(
            postgres=postgres,
            database_url=running.database_url,
            redis=redis,
            upstash=upstash,
            supabase=supabase,
            api=api,
            env=running.env(),
            issuer=running.issuer,
            log_dir=running.log_dir,
        )


@dataclass
class Workers:
    """Worker processes of one test; all stopped when it ends."""

    stack: Stack
    started: list[WorkerProcess] = field(default_factory=list)

    def start(
        self, count: int = 1, *, concurrency: int = MAX_ACTIVE_JOBS, **env: str
    ) -> list[WorkerProcess]:
        new = [
            WorkerProcess(
                self.stack.worker_env(**env), log_dir=self.stack.log_dir, concurrency=concurrency
            ).start()
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
