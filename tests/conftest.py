"""Session fixtures: a private Redis, a scratch PostgreSQL database, both emulators, Settings.

Everything is real: redis-server and PostgreSQL processes, the emulators served by uvicorn,
the official clients speaking HTTP to them. Nothing here touches the database `make dev` uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from storyq.config import DEV_JWT_SECRET, Settings
from storyq_local.servers import ThreadedServer, serve_in_thread
from storyq_local.services import ensure_postgres
from tests.support.databases import create_scratch_database, drop_database
from tests.support.processes import RedisProcess

# Quiet, local Powertools, whatever the shell running the tests has set.
os.environ.update(
    {
        "POWERTOOLS_TRACE_DISABLED": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "StoryqTest",
        "POWERTOOLS_METRICS_DISABLED": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }
)

POSTGRES_SERVER_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
UPSTASH_TOKEN = "storyq-test-upstash-token"
JWT_SECRET = DEV_JWT_SECRET


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The PostgreSQL server the tests use (started when it is down)."""
    state = Path(tmp_path_factory.mktemp("pgstate"))
    return ensure_postgres(POSTGRES_SERVER_URL, state)


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A scratch database with every migration applied, dropped at the end of the session."""
    url = create_scratch_database(postgres_server_url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def redis_process() -> Iterator[RedisProcess]:
    """A private redis-server for this session; tests may flush it."""
    server = RedisProcess().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def upstash_emulator(redis_process: RedisProcess) -> Iterator[ThreadedServer]:
    from storyq_local.upstash_emulator import create_app

    server = serve_in_thread(create_app(redis_url=redis_process.url, token=UPSTASH_TOKEN))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def supabase_emulator(database_url: str) -> Iterator[ThreadedServer]:
    from storyq_local.supabase_emulator import create_app

    # A loaded 2-core CI machine may keep a request waiting for a connection for a while.
    app = create_app(database_url=database_url, jwt_secret=JWT_SECRET, pool_timeout=20.0)
    server = serve_in_thread(app)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(upstash_emulator: ThreadedServer, supabase_emulator: ThreadedServer) -> Settings:
    """Settings pointing at this session's emulators (no .env, no retries)."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        storyq_env="dev",
        upstash_redis_rest_url=upstash_emulator.url,
        upstash_redis_rest_token=UPSTASH_TOKEN,  # type: ignore[arg-type]  # coerced to SecretStr
        upstash_rest_retries=0,
        supabase_url=supabase_emulator.url,
        supabase_jwt_secret=JWT_SECRET,  # type: ignore[arg-type]
    )
