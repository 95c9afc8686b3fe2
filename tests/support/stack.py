"""The tests' local stacks, put together by `storyq_local.stack.builder` like every other one:
a migrated scratch database and a private redis-server behind emulators on threads.

The session shares one (tests/conftest.py); suites whose workers sweep every pending job in the
database (worker, web, deploy) start a private one of their own with `private_stack`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storyq.config import DEV_JWT_SECRET
from storyq_local.stack.builder import (
    ApiSpec,
    DatabaseSpec,
    EmulatorSpec,
    LocalStack,
    StackSpec,
    start_stack,
)
from storyq_local.stack.sam import SamLocal, SamSpec, start_sam_local

UPSTASH_TOKEN = "storyq-test-upstash-token"
JWT_SECRET = DEV_JWT_SECRET
# Every test stack's API and workers fail fast (no Upstash retries) and write template stories.
TEST_SETTINGS: dict[str, Any] = {"upstash_rest_retries": 0, "generator": "template"}

# The reference page of this checkout.
WEB_DIR = Path(__file__).resolve().parents[2] / "web"


def scratch_spec(
    postgres_server_url: str,
    *,
    prefix: str,
    settings: dict[str, Any] | None = None,
    api: ApiSpec | None = None,
    emulators: EmulatorSpec | None = None,
) -> StackSpec:
    """A scratch database named `<prefix>_…` and a private Redis; `settings` for its API and
    workers (timings, limits) on top of `TEST_SETTINGS`."""
    return StackSpec(
        database=DatabaseSpec(server_url=postgres_server_url, scratch_prefix=prefix),
        emulators=emulators or EmulatorSpec(),
        api=api,
        upstash_token=UPSTASH_TOKEN,
        jwt_secret=JWT_SECRET,
        settings={**TEST_SETTINGS, **(settings or {})},
    )


@contextmanager
def private_stack(
    postgres_server_url: str,
    *,
    prefix: str,
    settings: dict[str, Any] | None = None,
    api: ApiSpec | None = None,
) -> Iterator[LocalStack]:
    """A private stack for the duration of the `with`."""
    spec = scratch_spec(postgres_server_url, prefix=prefix, settings=settings, api=api)
    with start_stack(spec) as stack:
        yield stack


@contextmanager
def sam_stack(
    postgres_server_url: str,
    image: str,
    *,
    prefix: str,
    settings: dict[str, Any] | None = None,
    sam: SamSpec | None = None,
) -> Iterator[tuple[LocalStack, SamLocal]]:
    """A private stack with the built functions in sam's Lambda emulation in front of it (free
    ports, no schedule unless `sam` says otherwise): `storyq_local.stack.sam`."""
    spec = sam or SamSpec(api_port=0, lambda_port=0, schedule_seconds=None)
    with (
        private_stack(postgres_server_url, prefix=prefix, settings=settings) as stack,
        start_sam_local(stack, spec, image=image) as running,
    ):
        yield stack, running
