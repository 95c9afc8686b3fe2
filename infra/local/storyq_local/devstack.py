"""`storyq dev` (what `make dev` runs): the whole service on loopback, with no cloud.

Redis and PostgreSQL (found, started or embedded) → migrations → the Upstash and Supabase
emulators on the ports the settings name → the API on PORT. Prints a dev token and a curl line.
"""

from __future__ import annotations

import signal
import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from storyq.config import Settings
from storyq_local import supabase_emulator, upstash_emulator
from storyq_local.config import LocalSettings, project_root
from storyq_local.migrate import migrate
from storyq_local.servers import ThreadedServer, serve_in_thread
from storyq_local.services import ensure_postgres, ensure_redis
from storyq_local.users import dev_token

DEV_USER = uuid.UUID("00000000-0000-4000-8000-00000000d3e0")


@dataclass
class DevStack:
    """The running pieces, stopped in reverse order."""

    settings: Settings
    local: LocalSettings
    database_url: str
    servers: list[ThreadedServer] = field(default_factory=list)

    def stop(self) -> None:
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

        stack.servers.append(
            serve_in_thread(
                create_app(settings), host="127.0.0.1", port=local.port, log_level="info"
            )
        )
    except BaseException:
        stack.stop()
        raise
    return stack


def run(settings: Settings, local: LocalSettings) -> None:
    """Start the stack, print how to use it, and serve until SIGINT or SIGTERM."""
    stack = start(settings, local)
    token = dev_token(settings, database_url=stack.database_url, user_id=DEV_USER)
    api = f"http://127.0.0.1:{local.port}"
    print(
        f"\nstoryq is up.\n"
        f"  API               {api}   (docs: {api}/docs)\n"
        f"  Upstash emulator  {settings.upstash_redis_rest_url}\n"
        f"  Supabase emulator {settings.supabase_url}\n"
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
