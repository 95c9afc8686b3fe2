"""The PostgreSQL under a local stack's Supabase emulator, when the stack owns it: a migrated
scratch database on a server (one per test session or benchmark run, dropped afterwards), and a
private cluster of our own that a test may stop and start without harming anyone else."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storyq_local.config import project_root
from storyq_local.stack.migrate import migrate
from storyq_local.stack.servers import free_port, wait_until

MIGRATIONS = project_root() / "supabase" / "migrations"


def migrations_dir() -> Path:
    return MIGRATIONS


def create_scratch_database(server_url: str, *, prefix: str = "storyq_test") -> str:
    """A new, migrated database on the server; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = make_conninfo(server_url, dbname=name)
    migrate(url, MIGRATIONS)
    return url


def drop_database(url: str) -> None:
    name = str(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def _postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def private_postgres_available() -> bool:
    return _postgres_bin("initdb") is not None and _postgres_bin("pg_ctl") is not None


def _as_postgres_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: root hands the cluster to the `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@dataclass
class PrivatePostgres:
    """A throwaway PostgreSQL cluster of our own, so a test may stop it without harming others."""

    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="storyq-pg-")))

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            _as_postgres_user(list(args)),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, user="postgres")
        initdb = _postgres_bin("initdb")
        assert initdb is not None
        self._run(initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self.start()

    def start(self) -> PrivatePostgres:
        pg_ctl = _postgres_bin("pg_ctl")
        assert pg_ctl is not None
        options = (
            f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c max_connections=200"
        )
        self._run(
            pg_ctl,
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.workdir / "log"),
            "-w",
            "start",
        )
        wait_until(self.answers, timeout=30)
        return self

    def stop(self, mode: str = "fast") -> None:
        pg_ctl = _postgres_bin("pg_ctl")
        assert pg_ctl is not None
        self._run(pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    def destroy(self) -> None:
        if self.answers():
            self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)
