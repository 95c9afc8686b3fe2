"""`storyq dev` (what `make dev` runs): the whole service on loopback, with no cloud.

Redis and PostgreSQL (found, started or embedded) → migrations → the Upstash and Supabase
emulators on the ports the settings name (and, with GENERATOR=openai and no OPENAI_API_KEY or
OPENAI_BASE_URL, the OpenAI emulator, which the worker then writes with) → the API on PORT, with
the reference page at / → a worker. Prints a dev token and a curl line.
"""

from __future__ import annotations

import os
import signal
import threading
import uuid
from urllib.parse import urlsplit

from storyq.config import Settings
from storyq_local.config import LocalSettings
from storyq_local.stack.builder import (
    ApiSpec,
    DatabaseSpec,
    EmulatorSpec,
    LocalStack,
    StackSpec,
    WorkerSpec,
    start_stack,
)
from storyq_local.stack.users import dev_token
from storyq_local.stack.web import default_web_directory

DEV_USER = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
# Without GENERATION_DELAY_SECONDS the dev stack makes each story take this long, so the
# queue, the position and the progress can be watched.
DEV_GENERATION_DELAY_SECONDS = 15.0


def _port(url: str, default: int) -> int:
    return urlsplit(url).port or default


def wants_openai_emulator(settings: Settings) -> bool:
    """GENERATOR=openai with no provider configured: the local OpenAI emulator plays it."""
    return (
        settings.generator == "openai"
        and settings.openai_base_url is None
        and settings.openai_api_key is None
    )


def dev_spec(settings: Settings, local: LocalSettings) -> StackSpec:
    """The dev database and Redis as configured, everything on threads of this process."""
    jwt_secret = settings.supabase_jwt_secret
    if jwt_secret is None:
        raise SystemExit("the local stack signs and checks HS256 tokens: set SUPABASE_JWT_SECRET")
    return StackSpec(
        database=DatabaseSpec(server_url=local.database_url),
        redis_url=local.redis_url,
        emulators=EmulatorSpec(
            upstash_port=_port(settings.upstash_redis_rest_url, 8079),
            supabase_port=_port(settings.supabase_url, 54321),
            openai=wants_openai_emulator(settings),
            # Its stories stream as long as the template generator's take.
            openai_story_seconds=settings.generation_delay_seconds,
        ),
        api=ApiSpec(port=local.port, web=default_web_directory()),
        worker=WorkerSpec(grace_seconds=5.0),
        upstash_token=settings.upstash_redis_rest_token.get_secret_value(),
        jwt_secret=jwt_secret.get_secret_value(),
        base_settings=settings,
        state_dir=local.state_dir,
        log_level="info",
    )


def start(settings: Settings, local: LocalSettings) -> LocalStack:
    """Bring every piece up and return once each accepts connections."""
    stack = start_stack(dev_spec(settings, local))
    print(f"database: {len(stack.migrations_applied)} migration(s) applied", flush=True)
    return stack


def run(settings: Settings, local: LocalSettings) -> None:
    """Start the stack, print how to use it, and serve until SIGINT or SIGTERM."""
    if "GENERATION_DELAY_SECONDS" not in os.environ and settings.generation_delay_seconds == 0:
        settings = settings.model_copy(
            update={"generation_delay_seconds": DEV_GENERATION_DELAY_SECONDS}
        )
    stack = start(settings, local)
    running = stack.settings()
    token = dev_token(running, database_url=stack.database_url, user_id=DEV_USER)
    api = f"http://127.0.0.1:{local.port}"
    openai = (
        f"  OpenAI emulator   {running.openai_base_url}   (model {running.openai_model})\n"
        if stack.openai is not None
        else ""
    )
    print(
        f"\nstoryq is up.\n"
        f"  API               {api}   (docs: {api}/docs)\n"
        f"  web page          {api}/?token={token}\n"
        f"  Upstash emulator  {running.upstash_redis_rest_url}\n"
        f"  Supabase emulator {running.supabase_url}\n"
        f"{openai}"
        f"  worker            {running.generator} generator, "
        f"{running.generation_delay_seconds:g} s per story, {running.max_active_jobs} at once\n"
        f"  dev user          {DEV_USER}\n\n"
        f"  export TOKEN={token}\n"
        f"  curl -s {api}/api/health\n"
        f'  curl -s -H "Authorization: Bearer $TOKEN" {api}/api/jobs\n\n'
        f"Credits: storyq credits add --user {DEV_USER} --amount 10\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    stopping.wait()
    print("stopping…", flush=True)
    stack.stop()
