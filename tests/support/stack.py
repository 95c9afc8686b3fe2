"""A private local stack for suites whose workers sweep every pending job in the database:
its own scratch database and redis-server behind their own emulators."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from storyq.config import DEV_JWT_SECRET
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
