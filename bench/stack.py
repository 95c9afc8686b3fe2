"""The server side of the benchmarks: a private stack (storyq_local.stack.builder) whose
emulators and API run in processes apart from the load generator, optionally pinned to CPUs of
their own, with each emulator counting the HTTP requests it answers (one Upstash request or one
PostgREST round trip each).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from storyq.config import DEV_JWT_SECRET, Settings
from storyq_local.stack.builder import (
    ApiSpec,
    DatabaseSpec,
    EmulatorSpec,
    LocalStack,
    StackSpec,
    start_stack,
)

UPSTASH_TOKEN = "storyq-bench-upstash-token"
JWT_SECRET = DEV_JWT_SECRET

# Quiet, local Powertools (as the tests run it): no traces, no metrics flush, warnings only.
POWERTOOLS_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "StoryqBench",
    "POWERTOOLS_METRICS_DISABLED": "1",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "AWS_DEFAULT_REGION": "eu-central-1",
}

# The API under load: limits out of the way, five generations at once.
SETTINGS: dict[str, Any] = {
    "upstash_rest_retries": 0,
    "generate_rate_limit": 1_000_000,
    "read_rate_limit": 1_000_000,
    "max_active_jobs": 5,
}


def bench_spec(postgres_server_url: str, *, cpus: set[int] | None, log_dir: Path) -> StackSpec:
    """A scratch database and a private redis-server; the emulators and the API each in a
    process of its own, pinned to `cpus`, logging to `log_dir`."""
    return StackSpec(
        database=DatabaseSpec(server_url=postgres_server_url, scratch_prefix="storyq_bench"),
        emulators=EmulatorSpec(where="process", count_requests=True),
        api=ApiSpec(where="process"),
        upstash_token=UPSTASH_TOKEN,
        jwt_secret=JWT_SECRET,
        settings=SETTINGS,
        process_env=POWERTOOLS_ENV,
        cpus=frozenset(cpus) if cpus else None,
        log_dir=log_dir,
    )


@dataclass
class ServerSide:
    """What the benchmarks read from the running stack."""

    stack: LocalStack

    @property
    def api_url(self) -> str:
        assert self.stack.api is not None
        return self.stack.api.url

    @property
    def upstash_url(self) -> str:
        return self.stack.upstash.url

    @property
    def supabase_url(self) -> str:
        return self.stack.supabase.url

    @property
    def database_url(self) -> str:
        return self.stack.database_url

    @property
    def log_dir(self) -> Path:
        return self.stack.log_dir

    def redis(self) -> redis.Redis:
        """A direct client of the Redis behind the Upstash emulator."""
        return self.stack.redis.client()

    def settings(self) -> Settings:
        """Settings for the worker that runs in the benchmark's own process."""
        return self.stack.settings()

    def counts(self) -> dict[str, Counter[str]]:
        """Requests each emulator has answered so far, by path."""
        return self.stack.request_counts()

    def stop(self) -> None:
        self.stack.stop()


def start_server_side(postgres_server_url: str, *, cpus: set[int] | None) -> ServerSide:
    log_dir = Path(tempfile.mkdtemp(prefix="storyq-bench-"))  # kept: the table names it
    return ServerSide(start_stack(bench_spec(postgres_server_url, cpus=cpus, log_dir=log_dir)))
