"""The worker's own local stack: a private redis-server and scratch database behind their own
emulators, so sweeps (which rebuild the queue from every pending job in Postgres) never meet
the jobs other test modules leave behind. Each test starts from an empty queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from storyq.clients import async_postgrest, async_redis
from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.stack.builder import LocalStack
from storyq_local.stack.users import ensure_user
from tests.support.stack import private_stack

# Short leases and delays: a dead worker is noticed within about a second.
WORKER_TIMINGS: dict[str, float] = {
    "lease_seconds": 1.5,
    "generation_delay_seconds": 0.3,
    "generation_timeout_seconds": 20.0,
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 0.5,
    "worker_poll_seconds": 0.2,
    "worker_time_margin_seconds": 1.0,
}


@pytest.fixture(scope="session")
def worker_stack(postgres_server_url: str) -> Iterator[LocalStack]:
    with private_stack(postgres_server_url, prefix="storyq_worker") as stack:
        yield stack


@pytest.fixture(scope="session")
def worker_settings(worker_stack: LocalStack) -> Settings:
    return worker_stack.settings(**WORKER_TIMINGS)


@pytest.fixture(autouse=True)
def _empty_queue(request: pytest.FixtureRequest) -> None:
    """Each stack test starts with an empty Redis and no unfinished job in Postgres."""
    if "worker_stack" not in request.fixturenames:
        return
    stack: LocalStack = request.getfixturevalue("worker_stack")
    stack.redis.client().flushall()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        # Test hygiene on a private scratch database: leftovers of an earlier test are closed
        # directly, so no later sweep re-dispatches them.
        conn.execute(
            "update public.story_jobs set status = 'cancelled', finished_at = now()"
            " where status in ('pending', 'processing')"
        )
        # and the sweep's walk over pending jobs starts at the head of the queue
        conn.execute("update private.dispatch_cursor set queued_at = null, job_id = null")


@pytest.fixture
async def store(worker_settings: Settings) -> AsyncIterator[Store]:
    db = async_postgrest(worker_settings)
    yield Store(db)
    await db.aclose()


@pytest.fixture
async def dispatcher(worker_settings: Settings) -> AsyncIterator[Dispatcher]:
    redis = async_redis(worker_settings)
    queue = Dispatcher(redis, max_active=worker_settings.max_active_jobs)
    await queue.rebuild([])  # the emptied database: Redis mirrors it, claims may start
    yield queue
    await redis.close()


@pytest.fixture
async def user(worker_stack: LocalStack, store: Store) -> uuid.UUID:
    """A signed-up user holding 100 credits."""
    user_id = uuid.uuid4()
    ensure_user(worker_stack.database_url, user_id)
    await store.credits.grant(user_id, 100)
    return user_id


@pytest.fixture
def worker_env(worker_stack: LocalStack) -> dict[str, str]:
    """The environment a worker process needs to find this stack (no .env is read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTASH_", "SUPABASE_"))}
    env.update(
        {
            **worker_stack.env(),
            "GENERATOR": "template",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            **{name.upper(): str(value) for name, value in WORKER_TIMINGS.items()},
        }
    )
    return env


class WorkerProcess:
    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "storyq_worker.runner", "--poll", "0.2", *args],
            env=env,
            cwd=cwd,  # no .env there: the environment alone configures it
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        out, _ = self.process.communicate(timeout=10)
        return out.decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


Spawn = Callable[..., WorkerProcess]


@pytest.fixture
def spawn(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Spawn]:
    """Start worker processes (`spawn(*args, delay=seconds)`); killed at the end if alive."""
    started: list[WorkerProcess] = []

    def start(*args: str, delay: float) -> WorkerProcess:
        env = {**worker_env, "GENERATION_DELAY_SECONDS": str(delay)}
        worker = WorkerProcess(env, tmp_path, *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
