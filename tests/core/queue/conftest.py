"""Fixtures of the dispatcher tests: the official async Upstash client over this session's
emulator, and a Dispatcher on it that is ready for claims (as after a sweep of an empty
Postgres)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from upstash_redis.asyncio import Redis

from storyq.clients import async_redis
from storyq.config import Settings
from storyq.queue import Dispatcher
from storyq_local.stack.servers import ThreadedServer
from tests.support.stack import UPSTASH_TOKEN


@pytest.fixture
async def upstash(upstash_emulator: ThreadedServer) -> AsyncIterator[Redis]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
        upstash_redis_rest_url=upstash_emulator.url,
        upstash_redis_rest_token=UPSTASH_TOKEN,  # type: ignore[arg-type]  # coerced to SecretStr
        upstash_rest_retries=0,
    )
    client = async_redis(settings)
    yield client
    await client.close()


@pytest.fixture
async def queue(upstash: Redis) -> Dispatcher:
    dispatcher = Dispatcher(upstash, max_active=5)
    await dispatcher.rebuild([])  # an empty Postgres: the queue is ready for claims
    return dispatcher
