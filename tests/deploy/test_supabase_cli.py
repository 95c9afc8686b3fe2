"""The Supabase CLI (the npm package pinned in package-lock.json, installed by `npm ci`) runs
README.md's deploy commands against a scratch database that has only the Supabase-compat
bootstrap, as a new Supabase project has only what Supabase provides:

- `db push` applies every migration, and the schema it leaves is supabase/schema.sql's; a second
  push applies nothing, and neither does `storyq migrate` (both keep
  supabase_migrations.schema_migrations);
- `migration list` shows every migration both locally and in the database;
- `db lint` (plpgsql_check, Debian's postgresql-15-plpgsql-check) reports no error in `public`
  and `private`, and does find one where there is one.

The commands are README.md's Deploy section's, word for word (a test checks that section
gives exactly these, after `npm ci`), run as written through bash from the repository's root,
with SUPABASE_DB_URL naming the scratch database: the README's steps are what is tested. Never
the database `make dev` uses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storyq_local.config import project_root
from storyq_local.schema_dump import SNAPSHOT, normalize, pg_dump_major, pg_dump_schema
from storyq_local.stack.migrate import bootstrap_sql, ensure_database, find_migrations, migrate
from storyq_local.stack.postgres import drop_database, migrations_dir

ROOT = project_root()
README = ROOT / "README.md"
CLI = ROOT / "node_modules" / ".bin" / "supabase"

# The deploy commands, as README.md's Deploy section must give them (checked below).
PUSH = 'npx supabase db push --db-url "$SUPABASE_DB_URL"'
LIST = 'npx supabase migration list --db-url "$SUPABASE_DB_URL"'
LINT = 'npx supabase db lint --db-url "$SUPABASE_DB_URL" -s public,private --fail-on error'
SUPABASE_COMMANDS = [PUSH, LIST, LINT]
LINTED_SCHEMAS = ("public", "private")

# `migration list`: one row per migration, "`local` | `remote` | `time`" (an empty cell when a
# side lacks it).
_LIST_ROW = re.compile(r"^\s*`?(\d{14})?`?\s*\|\s*`?(\d{14})?`?\s*\|")


@dataclass(frozen=True)
class Run:
    command: str
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> Run:
        assert self.returncode == 0, f"{self.command} exited {self.returncode}:\n{self.stderr}"
        return self


def pinned_cli_version() -> str:
    manifest = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))
    version = manifest["devDependencies"]["supabase"]
    assert isinstance(version, str)
    return version


def supabase(command: str, database_url: str) -> Run:
    """Run one of the README's commands from the repository's root, as a deployer would."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "SUPABASE_DB_URL": database_url,
        # No telemetry from a test run.
        "DO_NOT_TRACK": "1",
        "SUPABASE_TELEMETRY_DISABLED": "1",
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Run(command, done.returncode, done.stdout, done.stderr)


def cli_url(database_url: str) -> str:
    """The URL as the CLI takes it: a postgresql:// URL (percent-encoded), no TLS locally."""
    params = conninfo_to_dict(database_url)
    user = params.get("user") or "postgres"
    password = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    host = params.get("host") or "127.0.0.1"
    port = params.get("port") or "5432"
    return f"postgresql://{user}{password}@{host}:{port}/{params['dbname']}?sslmode=disable"


def readme_deploy_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Deploy\n(.*?)(?=^## )", text, re.MULTILINE | re.DOTALL)
    assert match is not None, "README.md has no Deploy section"
    return match[1]


def readme_commands(section: str) -> list[str]:
    """The lines of the section's shell code blocks, without comments."""
    lines: list[str] = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", section, re.DOTALL):
        for text in block.splitlines():
            line = re.sub(r"(^|\s+)#.*$", "", text).strip()
            if line:
                lines.append(line)
    return lines


def lint_issues(run: Run) -> list[dict[str, Any]]:
    """`db lint`'s findings: a JSON array on stdout, nothing when there is none."""
    out = run.stdout.strip()
    if not out:
        assert "No schema errors found" in run.stderr, run.stderr
        return []
    found = json.loads(out)
    assert isinstance(found, list), out
    return found


def errors_in(issues: list[dict[str, Any]]) -> list[str]:
    return [
        f"{finding['function']}: {issue['message']}"
        for finding in issues
        for issue in finding["issues"]
        if issue["level"] == "error"
    ]


@dataclass(frozen=True)
class Pushed:
    url: str  # psycopg's form
    cli_url: str  # the CLI's form (SUPABASE_DB_URL)
    bootstrap_dump: str  # pg_dump before the push: what "Supabase" provided
    first: Run
    second: Run


@pytest.fixture(scope="module")
def cli() -> Path:
    if not CLI.exists():
        pytest.fail("no Supabase CLI in node_modules: `npm ci` (make test runs it) installs it")
    version = subprocess.run(
        [str(CLI), "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()
    assert version == pinned_cli_version(), "node_modules is stale: `npm ci`"
    return CLI


@pytest.fixture(scope="module")
def pushed(cli: Path, postgres_server_url: str) -> Iterator[Pushed]:
    """A scratch database with the bootstrap only, then pushed to twice with the CLI."""
    url = make_conninfo(postgres_server_url, dbname=f"storyq_cli_{uuid.uuid4().hex[:10]}")
    ensure_database(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(bootstrap_sql())
        bootstrap_dump = pg_dump_schema(url)
        target = cli_url(url)
        first = supabase(PUSH, target).check()
        second = supabase(PUSH, target).check()
        yield Pushed(url, target, bootstrap_dump, first, second)
    finally:
        drop_database(url)


def test_readme_deploy_steps_are_the_commands_tested_here() -> None:
    commands = readme_commands(readme_deploy_section())
    assert [line for line in commands if line.startswith("npx supabase ")] == SUPABASE_COMMANDS
    # The pinned CLI is installed first, from the lockfile.
    assert "npm ci" in commands[: commands.index(PUSH)]


def test_the_cli_is_the_pinned_npm_package(cli: Path) -> None:
    lock = json.loads((ROOT / "package-lock.json").read_text(encoding="utf-8"))
    version = pinned_cli_version()
    assert lock["packages"]["node_modules/supabase"]["version"] == version
    # The binary ships inside a platform package of the same version (no download at install).
    platforms = {
        name: entry["version"]
        for name, entry in lock["packages"].items()
        if name.startswith("node_modules/@supabase/cli-linux-")
    }
    assert platforms, "no Linux binary package in package-lock.json"
    assert set(platforms.values()) == {version}, platforms


def test_first_push_applies_every_migration(pushed: Pushed) -> None:
    files = [f"{m.version}_{m.name}.sql" for m in find_migrations(migrations_dir())]
    applied = re.findall(r"^Applying migration (\S+)\.\.\.$", pushed.first.stderr, re.MULTILINE)
    assert applied == files, pushed.first.stderr
    assert "Finished supabase db push." in pushed.first.stdout
    with psycopg.connect(pushed.url) as conn:
        recorded = conn.execute(
            "select version, name from supabase_migrations.schema_migrations order by version"
        ).fetchall()
    assert recorded == [(m.version, m.name) for m in find_migrations(migrations_dir())]


def test_the_pushed_schema_is_schema_sql(pushed: Pushed) -> None:
    # The CLI splits each file into statements itself: the result is still exactly what
    # `storyq migrate` builds (supabase/schema.sql, checked against it by its own test).
    actual = normalize(
        pg_dump_schema(pushed.url), pushed.bootstrap_dump, pg_dump_version=pg_dump_major()
    )
    assert actual == SNAPSHOT.read_text(encoding="utf-8")


def test_second_push_applies_nothing(pushed: Pushed) -> None:
    assert "Remote database is up to date." in pushed.second.stdout
    assert "Applying migration" not in pushed.second.stderr
    # storyq migrate keeps the same table: it finds nothing to do either.
    assert migrate(pushed.url, migrations_dir()) == []


def test_migration_list_shows_every_migration_on_both_sides(pushed: Pushed) -> None:
    listed = supabase(LIST, pushed.cli_url).check()
    rows = [m.groups() for m in map(_LIST_ROW.match, listed.stdout.splitlines()) if m]
    rows = [row for row in rows if any(row)]
    versions = [m.version for m in find_migrations(migrations_dir())]
    assert rows == [(v, v) for v in versions], listed.stdout


def test_lint_finds_no_error_in_public_and_private(pushed: Pushed) -> None:
    linted = supabase(LINT, pushed.cli_url)
    assert linted.returncode == 0, linted.stdout + linted.stderr  # --fail-on error
    for schema in LINTED_SCHEMAS:
        assert f"Linting schema: {schema}" in linted.stderr, linted.stderr
    issues = lint_issues(linted)
    assert errors_in(issues) == []
    assert {f["function"].split(".")[0] for f in issues} <= set(LINTED_SCHEMAS)


def test_lint_does_find_errors(pushed: Pushed) -> None:
    """The lint above checks something: a broken function in a schema of its own fails it."""
    probe = f"storyq_lint_probe_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pushed.url, autocommit=True) as conn:
        conn.execute(f"create schema {probe}")
        conn.execute(
            f"create function {probe}.broken() returns bigint language plpgsql as $$"
            " begin return (select no_such_column from public.story_jobs limit 1); end $$"
        )
    try:
        linted = supabase(LINT.replace("public,private", probe), pushed.cli_url)
        assert linted.returncode != 0
        assert errors_in(lint_issues(linted)) == [
            f'{probe}.broken: column "no_such_column" does not exist'
        ]
    finally:
        with psycopg.connect(pushed.url, autocommit=True) as conn:
            conn.execute(f"drop schema {probe} cascade")
