"""`storyq dev` (what `make dev` runs): the whole service on loopback, with no cloud.

Redis and PostgreSQL (found, started or embedded) → migrations → the Upstash and Supabase
emulators on the ports the settings name → the API on PORT. Prints a dev token and a curl line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from storyq.config import Settings
from storyq_local import supabase_emulator, upstash_emulator
from storyq_local.config import LocalSettings, project_root
from storyq_local.migrate import migrate
from storyq_local.servers import ThreadedServer, serve_in_thread
from storyq_local.services import ensure_postgres, ensure_redis
from storyq_local.users import dev_token

if TYPE_CHECKING:
    from storyq_worker.runner import Shutdown

DEV_USER = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")
# Without GENERATION_DELAY_SECONDS the dev stack makes each story take this long, so the
# queue, the position and the progress can be watched.
DEV_GENERATION_DELAY_SECONDS = 15.0


class DevWorker:
    """`storyq worker` on a thread of its own, stopped like the process on SIGTERM."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: Shutdown | None = None
        self._thread = threading.Thread(target=self._run, name="storyq-worker", daemon=True)

    def start(self) -> DevWorker:
        self._thread.start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from storyq_worker.runner import RunnerOptions, Shutdown, run_worker

        shutdown = Shutdown(grace_seconds=5.0)
        self._loop, self._shutdown = asyncio.get_running_loop(), shutdown
        self._ready.set()
        options = RunnerOptions(
            poll_seconds=self._settings.worker_poll_seconds,
            concurrency=self._settings.max_active_jobs,
            grace_seconds=5.0,
        )
        await run_worker(self._settings, options, shutdown)

    def stop(self, timeout: float = 15.0) -> None:
        if self._loop is not None and self._shutdown is not None:
            self._loop.call_soon_threadsafe(self._shutdown.request)
        self._thread.join(timeout)


@dataclass
class DevStack:
    """The running pieces, stopped in reverse order."""

    settings: Settings
    local: LocalSettings
    database_url: str
    servers: list[ThreadedServer] = field(default_factory=list)
    worker: DevWorker | None = None

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        for server in reversed(self.servers):
            server.stop()


def _port(url: str, default: int) -> int:
    return urlsplit(url).port or default


def start(settings: Settings, local: LocalSettings) -> DevStack:
    """Bring every piece up and return once each accepts connections."""
    redis_url = ensure_redis(local.redis_url, local.state_dir)
    database_url = ensure_postgres(local.database_url, local.state_dir)
    applied = migrate(database_url, project_root() / "supabase" / "migrations")
    print(f"database: {len(applied)} migration(s) applied", flush=True)

    stack = DevStack(settings=settings, local=local, database_url=database_url)
    jwt_secret = settings.supabase_jwt_secret
    if jwt_secret is None:
        raise SystemExit("the local stack signs and checks HS256 tokens: set SUPABASE_JWT_SECRET")
    try:
        stack.servers.append(
            serve_in_thread(
                upstash_emulator.create_app(
                    redis_url=redis_url,
                    token=settings.upstash_redis_rest_token.get_secret_value(),
                ),
                port=_port(settings.upstash_redis_rest_url, 8079),
            )
        )
        stack.servers.append(
            serve_in_thread(
                supabase_emulator.create_app(
                    database_url=database_url, jwt_secret=jwt_secret.get_secret_value()
                ),
                port=_port(settings.supabase_url, 54321),
            )
        )
        from storyq_api.app import create_app  # the API is what the stack exists to serve
        from storyq_api.static import default_web_directory, mount_web

        app = create_app(settings)
        if (web := default_web_directory()) is not None:
            mount_web(app, web)  # the reference page at /, in dev only
        stack.servers.append(
            serve_in_thread(app, host="127.0.0.1", port=local.port, log_level="info")
        )
        stack.worker = DevWorker(settings).start()
    except BaseException:
        stack.stop()
        raise
    return stack


def run(settings: Settings, local: LocalSettings) -> None:
    """Start the stack, print how to use it, and serve until SIGINT or SIGTERM."""
    if "GENERATION_DELAY_SECONDS" not in os.environ and settings.generation_delay_seconds == 0:
        settings = settings.model_copy(
            update={"generation_delay_seconds": DEV_GENERATION_DELAY_SECONDS}
        )
    stack = start(settings, local)
    token = dev_token(settings, database_url=stack.database_url, user_id=DEV_USER)
    api = f"http://127.0.0.1:{local.port}"
    print(
        f"\nstoryq is up.\n"
        f"  API               {api}   (docs: {api}/docs)\n"
        f"  web page          {api}/?token={token}\n"
        f"  Upstash emulator  {settings.upstash_redis_rest_url}\n"
        f"  Supabase emulator {settings.supabase_url}\n"
        f"  worker            {settings.generator} generator, "
        f"{settings.generation_delay_seconds:g} s per story, {settings.max_active_jobs} at once\n"
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
