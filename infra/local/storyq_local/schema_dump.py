"""supabase/schema.sql: the schema storyq's migrations create, as one readable file of DDL.

`make schema` writes it and tests/core/store/test_schema_snapshot.py checks it, both through
`render_schema`: `pg_dump --schema-only` of a scratch database with every migration applied,
less every entry that a second scratch database, with only the Supabase-compat bootstrap,
dumps identically (Supabase's auth schema, the realtime publication, the default privileges:
what a Supabase project provides, not storyq). What a migration adds to or changes in those
stays. The text is normalized so that the same migrations always give the same file: no
version banner, no SET lines, no `\\restrict` keys, no owners.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storyq_local.config import project_root
from storyq_local.stack.migrate import bootstrap_sql, ensure_database, migrate

SNAPSHOT = project_root() / "supabase" / "schema.sql"
MIGRATIONS = project_root() / "supabase" / "migrations"
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# pg_dump heads every object with "--\n-- Name: x; Type: y; Schema: z; Owner: -\n--\n".
_ENTRY_HEADER = re.compile(r"^--\n-- (Name: [^\n]*)\n--\n", re.MULTILINE)
# Lines pg_dump adds around the objects: session settings and the \restrict guard (15.14+).
_NOISE_LINE = re.compile(r"^(SET .*;|SELECT pg_catalog\.set_config\(.*\);|\\(un)?restrict .*)$")
_FOOTER = "--\n-- PostgreSQL database dump complete\n--\n"


def pg_dump_major() -> str:
    """The major version of the pg_dump on PATH ("15"): the snapshot depends on it."""
    out = subprocess.run(
        [_pg_dump(), "--version"], check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"\) (\d+)", out)
    if match is None:
        raise RuntimeError(f"cannot read the pg_dump version from {out!r}")
    return match[1]


def pg_dump_schema(database_url: str) -> str:
    """The raw `pg_dump --schema-only --no-owner` of one database."""
    return subprocess.run(
        [_pg_dump(), "--schema-only", "--no-owner", f"--dbname={database_url}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def entries(dump: str) -> list[tuple[str, str]]:
    """The dump's objects as (header, DDL) pairs in dump order, without pg_dump's noise."""
    dump = dump.replace(_FOOTER, "")
    parts = _ENTRY_HEADER.split(dump)
    # parts = [preamble, header 1, body 1, header 2, body 2, ...]; the preamble is all noise.
    found: list[tuple[str, str]] = []
    for header, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not _NOISE_LINE.match(line)]
        found.append((header.removesuffix("; Owner: -"), "\n".join(lines).strip()))
    return found


def normalize(dump: str, baseline: str, *, pg_dump_version: str) -> str:
    """The text of schema.sql: `dump`'s entries that `baseline` does not hold identically."""
    provided = set(entries(baseline))
    kept = [entry for entry in entries(dump) if entry not in provided]
    out = [
        "-- The schema storyq's migrations create (supabase/migrations), as pg_dump "
        f"{pg_dump_version} --schema-only",
        "-- prints it, without what the Supabase-compat bootstrap provides. Generated: run",
        "-- `make schema` after adding a migration; tests/core/store/test_schema_snapshot.py",
        "-- fails while this file and the migrations disagree. Do not edit by hand.",
        "",
    ]
    for header, ddl in kept:
        out += ["--", f"-- {header}", "--", "", ddl, "", ""]
    return "\n".join(out).rstrip("\n") + "\n"


def render_schema(server_url: str, migrations_dir: Path = MIGRATIONS) -> str:
    """Build both scratch databases on `server_url`, dump them, drop them: schema.sql's text."""
    with (
        _scratch_database(server_url, "storyq_schema_boot") as baseline_url,
        _scratch_database(server_url, "storyq_schema") as database_url,
    ):
        with psycopg.connect(baseline_url, autocommit=True) as conn:
            conn.execute(bootstrap_sql())
        migrate(database_url, migrations_dir)
        return normalize(
            pg_dump_schema(database_url),
            pg_dump_schema(baseline_url),
            pg_dump_version=pg_dump_major(),
        )


@contextmanager
def _scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    url = make_conninfo(server_url, dbname=f"{prefix}_{uuid.uuid4().hex[:10]}")
    ensure_database(url)
    try:
        yield url
    finally:
        name = str(conninfo_to_dict(url)["dbname"])
        with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def _pg_dump() -> str:
    found = shutil.which("pg_dump")
    if found is None:
        raise RuntimeError("pg_dump is not on PATH (Debian: apt-get install postgresql-client)")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m storyq_local.schema_dump",
        description="Write supabase/schema.sql from the migrations (scratch databases only).",
    )
    parser.add_argument(
        "--server-url",
        default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_SERVER_URL),
        help="the PostgreSQL server to create the scratch databases on",
    )
    parser.add_argument("--migrations", type=Path, default=MIGRATIONS)
    parser.add_argument("--output", type=Path, default=SNAPSHOT)
    args = parser.parse_args(argv)
    text = render_schema(args.server_url, args.migrations)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
