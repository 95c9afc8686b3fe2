"""`storyq migrate`: the Supabase-compat bootstrap, then supabase/migrations in order.

Applied versions are recorded in supabase_migrations.schema_migrations, the table the Supabase
CLI keeps, so a second run applies nothing. Each migration runs in its own transaction; an
advisory lock lets concurrent runs (parallel tests, two terminals) wait for each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

_MIGRATION_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x5709_0001


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path


def find_migrations(directory: Path) -> list[Migration]:
    """Every YYYYMMDDHHMMSS_name.sql file in `directory`, oldest first."""
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path.name}: migration files are named YYYYMMDDHHMMSS_name.sql")
        found.append(Migration(match["version"], match["name"], path))
    return found


def ensure_database(database_url: str) -> None:
    """Create the database named in `database_url` when it does not exist yet."""
    params = conninfo_to_dict(database_url)
    name = str(params.get("dbname") or "postgres")
    maintenance = make_conninfo(database_url, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def bootstrap_sql() -> str:
    """The Supabase-compatible schemas, roles and auth.* the migrations expect (bootstrap.sql)."""
    sql_file = resources.files("storyq_local.stack").joinpath("bootstrap.sql")
    return sql_file.read_text(encoding="utf-8")


def migrate(database_url: str, migrations_dir: Path) -> list[Migration]:
    """Apply what is missing; return the migrations applied by this run."""
    ensure_database(database_url)
    pending = find_migrations(migrations_dir)
    applied: list[Migration] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(bootstrap_sql())
            done = {
                row[0]
                for row in conn.execute("select version from supabase_migrations.schema_migrations")
            }
            for migration in pending:
                if migration.version in done:
                    continue
                _apply(conn, migration)
                applied.append(migration)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def _apply(conn: psycopg.Connection[tuple[object, ...]], migration: Migration) -> None:
    text = migration.path.read_text(encoding="utf-8")
    with conn.transaction():
        conn.execute(text)
        conn.execute(
            "insert into supabase_migrations.schema_migrations (version, name, statements)"
            " values (%s, %s, %s)",
            (migration.version, migration.name, [text]),
        )
