"""Session fixtures: a private Redis, a scratch PostgreSQL database, both emulators, Settings.

Everything is real: redis-server and PostgreSQL processes, the emulators served by uvicorn,
the official clients speaking HTTP to them. One local stack (storyq_local.stack.builder) holds
them for the whole session. Nothing here touches the database `make dev` uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storyq.config import Settings
from storyq_local.stack.builder import EmulatorSpec, LocalStack, start_stack
from storyq_local.stack.redis_server import RedisProcess
from storyq_local.stack.sam import docker_session
from storyq_local.stack.servers import ThreadedServer
from storyq_local.stack.services import ensure_postgres
from tests.support import stack as test_stacks
from tests.support.sql import Db
from tests.support.users import ApiUser, sign_up

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
UPSTASH_TOKEN = test_stacks.UPSTASH_TOKEN
JWT_SECRET = test_stacks.JWT_SECRET


@pytest.fixture(scope="session")
def lambda_image() -> Iterator[str]:
    """dockerd answering and the Lambda emulation image for the template's runtime (the tests of
    sam local): infra/local/lambda-image.sh installs docker.io and debootstrap when missing and
    reuses the image its recipe made before. A dockerd this started stops at the session's end,
    with its bridge and iptables rules."""
    if os.geteuid() != 0:
        pytest.fail("the sam local tests start dockerd and debootstrap an image: run them as root")
    with docker_session() as image:
        yield image


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The PostgreSQL server the tests use (started when it is down)."""
    state = Path(tmp_path_factory.mktemp("pgstate"))
    return ensure_postgres(POSTGRES_SERVER_URL, state)


@pytest.fixture(scope="session")
def session_stack(postgres_server_url: str) -> Iterator[LocalStack]:
    """The stack most suites share; its database keeps its rows for the whole session."""
    spec = test_stacks.scratch_spec(
        postgres_server_url,
        prefix="storyq_test",
        # A loaded 2-core CI machine may keep a request waiting for a connection for a while.
        emulators=EmulatorSpec(supabase_pool_timeout=20.0),
    )
    with start_stack(spec) as stack:
        yield stack


@pytest.fixture(scope="session")
def database_url(session_stack: LocalStack) -> str:
    """A scratch database with every migration applied, dropped at the end of the session."""
    return session_stack.database_url


@pytest.fixture(scope="session")
def redis_process(session_stack: LocalStack) -> RedisProcess:
    """A private redis-server for this session; tests may flush it."""
    assert isinstance(session_stack.redis, RedisProcess)
    return session_stack.redis


@pytest.fixture(scope="session")
def upstash_emulator(session_stack: LocalStack) -> ThreadedServer:
    assert isinstance(session_stack.upstash, ThreadedServer)
    return session_stack.upstash


@pytest.fixture(scope="session")
def supabase_emulator(session_stack: LocalStack) -> ThreadedServer:
    assert isinstance(session_stack.supabase, ThreadedServer)
    return session_stack.supabase


@pytest.fixture(scope="session")
def settings(session_stack: LocalStack) -> Settings:
    """Settings pointing at this session's emulators (no .env, no retries)."""
    return session_stack.settings()


@pytest.fixture
def default_settings() -> Settings:
    """Settings for tests that need no stack (the defaults, no .env)."""
    return Settings(_env_file=None)  # type: ignore[call-arg]  # pydantic-settings' init option


@pytest.fixture
def db(database_url: str) -> Db:
    """Direct SQL on the session's database."""
    return Db(database_url)


@pytest.fixture
def make_user(db: Db) -> Callable[..., ApiUser]:
    """A new user in auth.users with `credits` granted and a valid token."""

    def make(credits: int = 0, *, admin: bool = False) -> ApiUser:
        return sign_up(db, credits=credits, admin=admin)

    return make
