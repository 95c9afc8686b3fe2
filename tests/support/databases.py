"""Scratch PostgreSQL databases: one per test session, migrated, dropped afterwards."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from storyq_local.config import project_root
from storyq_local.migrate import migrate

MIGRATIONS = project_root() / "supabase" / "migrations"


def create_scratch_database(server_url: str, *, prefix: str = "storyq_test") -> str:
    """A new, migrated database on the server; returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    url = make_conninfo(server_url, dbname=name)
    migrate(url, MIGRATIONS)
    return url


def drop_database(url: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    name = str(conninfo_to_dict(url)["dbname"])
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


def migrations_dir() -> Path:
    return MIGRATIONS
