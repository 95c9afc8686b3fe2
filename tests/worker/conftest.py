"""The worker's own local stack: a private redis-server and scratch database behind their own
emulators, so sweeps (which rebuild the queue from every pending job in Postgres) never meet
the jobs other test modules leave behind. Each test starts from an empty queue.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from storyq.clients import async_postgrest, async_redis
from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq.store import Store
from storyq_local.servers import ThreadedServer, serve_in_thread
from storyq_local.users import ensure_user
from tests.conftest import JWT_SECRET, UPSTASH_TOKEN
from tests.support.databases import create_scratch_database, drop_database
from tests.support.processes import RedisProcess
from tests.worker.helpers import StackInfo

# Short leases and delays: a dead worker is noticed within about a second.
WORKER_TIMINGS: dict[str, float] = {
    "lease_seconds": 1.5,
    "generation_delay_seconds": 0.3,
    "generation_timeout_seconds": 20.0,
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 0.5,
    "stall_after_seconds": 600.0,
    "worker_poll_seconds": 0.2,
    "worker_time_margin_seconds": 1.0,
}


@pytest.fixture(scope="session")
def worker_stack(postgres_server_url: str) -> Iterator[StackInfo]:
    from storyq_local.supabase_emulator import create_app as supabase_app
    from storyq_local.upstash_emulator import create_app as upstash_app

    database_url = create_scratch_database(postgres_server_url, prefix="storyq_worker")
    redis = RedisProcess().start()
    servers: list[ThreadedServer] = []
    try:
        servers.append(serve_in_thread(upstash_app(redis_url=redis.url, token=UPSTASH_TOKEN)))
        servers.append(
            serve_in_thread(supabase_app(database_url=database_url, jwt_secret=JWT_SECRET))
        )
        yield StackInfo(
            database_url=database_url,
            redis=redis,
            upstash_url=servers[0].url,
            supabase_url=servers[1].url,
        )
    finally:
        for server in reversed(servers):
            server.stop()
        redis.stop()
        drop_database(database_url)


@pytest.fixture(scope="session")
def worker_settings(worker_stack: StackInfo) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        storyq_env="dev",
        upstash_redis_rest_url=worker_stack.upstash_url,
        upstash_redis_rest_token=UPSTASH_TOKEN,  # type: ignore[arg-type]  # coerced to SecretStr
        upstash_rest_retries=0,
        supabase_url=worker_stack.supabase_url,
        supabase_jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
        generator="template",
    ).model_copy(update=WORKER_TIMINGS)


@pytest.fixture(autouse=True)
def _empty_queue(request: pytest.FixtureRequest) -> None:
    """Each stack test starts with an empty Redis and no unfinished job in Postgres."""
    if "worker_stack" not in request.fixturenames:
        return
    stack: StackInfo = request.getfixturevalue("worker_stack")
    stack.redis.client().flushall()
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        # Test hygiene on a private scratch database: leftovers of an earlier test are closed
        # directly, so no later sweep re-dispatches them.
        conn.execute(
            "update public.story_jobs set status = 'cancelled', finished_at = now()"
            " where status in ('pending', 'processing')"
        )


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
async def user(worker_stack: StackInfo, store: Store) -> uuid.UUID:
    """A signed-up user holding 100 credits."""
    user_id = uuid.uuid4()
    ensure_user(worker_stack.database_url, user_id)
    await store.credits.grant(user_id, 100)
    return user_id


@pytest.fixture
def worker_env(worker_settings: Settings) -> dict[str, str]:
    """The environment a worker process needs to find this stack (no .env is read)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPSTASH_", "SUPABASE_"))}
    env.update(
        {
            "STORYQ_ENV": "dev",
            "UPSTASH_REDIS_REST_URL": worker_settings.upstash_redis_rest_url,
            "UPSTASH_REDIS_REST_TOKEN": UPSTASH_TOKEN,
            "UPSTASH_REST_RETRIES": "0",
            "SUPABASE_URL": worker_settings.supabase_url,
            "SUPABASE_JWT_SECRET": JWT_SECRET,
            "GENERATOR": "template",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            **{name.upper(): str(value) for name, value in WORKER_TIMINGS.items()},
        }
    )
    return env


@pytest.fixture
def worker_free_settings() -> Settings:
    """Settings for tests that need no stack (defaults, no .env)."""
    return Settings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings' init option
