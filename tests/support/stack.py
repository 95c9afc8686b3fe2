"""A private local stack for suites whose workers sweep every pending job in the database:
its own scratch database and redis-server behind their own emulators."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from storyq.config import DEV_JWT_SECRET, Settings
from storyq_local.servers import ThreadedServer, serve_in_thread
from tests.support.databases import create_scratch_database, drop_database
from tests.support.processes import RedisProcess

UPSTASH_TOKEN = "storyq-test-upstash-token"


@dataclass
class PrivateStack:
    database_url: str
    redis: RedisProcess
    upstash_url: str
    supabase_url: str

    def settings(self, **overrides: Any) -> Settings:
        """Settings for code running in the test process against this stack (no .env)."""
        return Settings(
            _env_file=None,  # type: ignore[call-arg]  # pydantic-settings' init-only option
            storyq_env="dev",
            upstash_redis_rest_url=self.upstash_url,
            upstash_redis_rest_token=UPSTASH_TOKEN,  # type: ignore[arg-type]  # a SecretStr
            upstash_rest_retries=0,
            supabase_url=self.supabase_url,
            supabase_jwt_secret=DEV_JWT_SECRET,  # type: ignore[arg-type]
            generator="template",
        ).model_copy(update=overrides)

    def env(self) -> dict[str, str]:
        """What a process (a built Lambda, a worker) needs to reach this stack."""
        return {
            "STORYQ_ENV": "dev",
            "UPSTASH_REDIS_REST_URL": self.upstash_url,
            "UPSTASH_REDIS_REST_TOKEN": UPSTASH_TOKEN,
            "UPSTASH_REST_RETRIES": "0",
            "SUPABASE_URL": self.supabase_url,
            "SUPABASE_JWT_SECRET": DEV_JWT_SECRET,
        }


@contextmanager
def private_stack(postgres_server_url: str, *, prefix: str) -> Iterator[PrivateStack]:
    from storyq_local.supabase_emulator import create_app as supabase_app
    from storyq_local.upstash_emulator import create_app as upstash_app

    database_url = create_scratch_database(postgres_server_url, prefix=prefix)
    redis = RedisProcess().start()
    servers: list[ThreadedServer] = []
    try:
        servers.append(serve_in_thread(upstash_app(redis_url=redis.url, token=UPSTASH_TOKEN)))
        servers.append(
            serve_in_thread(supabase_app(database_url=database_url, jwt_secret=DEV_JWT_SECRET))
        )
        yield PrivateStack(database_url, redis, servers[0].url, servers[1].url)
    finally:
        for server in reversed(servers):
            server.stop()
        redis.stop()
        drop_database(database_url)
