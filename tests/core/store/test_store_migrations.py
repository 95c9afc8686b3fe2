"""The data layer's migrations: on an empty database applied once, the second run a no-op; and
the fencing migration applied to a database that already holds jobs."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from storyq_local.stack.migrate import migrate
from storyq_local.stack.postgres import drop_database, migrations_dir
from storyq_local.stack.users import ensure_user

FENCE_MIGRATION = "20261130000100_fence_cap_and_liveness.sql"

# A fingerprint of what the migrations create: every object in public and private with its
# definition, grants and RLS flag, so a second run that changed anything would show.
SCHEMA_FINGERPRINT = """
select md5(string_agg(item, E'\\n' order by item)) from (
  select format('%s %s %s %s', c.relkind, c.oid::regclass, c.relrowsecurity, c.relacl) as item
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where n.nspname in ('public', 'private')
  union all
  select format('%s %s %s', p.oid::regprocedure, md5(p.prosrc), p.proacl)
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
  where n.nspname in ('public', 'private')
  union all
  select format('policy %s %s %s', polrelid::regclass, polname, pg_get_expr(polqual, polrelid))
  from pg_policy
  union all
  select format('publication %s.%s', schemaname, tablename) from pg_publication_tables
) items
"""


def fingerprint(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(SCHEMA_FINGERPRINT).fetchone()
    assert row is not None
    return str(row[0])


def test_migrations_apply_to_an_empty_database_twice(postgres_server_url: str) -> None:
    # Given a database that does not exist yet
    url = make_conninfo(postgres_server_url, dbname=f"storyq_migrate_twice_{uuid.uuid4().hex[:10]}")
    drop_database(url)
    try:
        # When migrate runs twice
        first = migrate(url, migrations_dir())
        before = fingerprint(url)
        second = migrate(url, migrations_dir())

        # Then the first run applies every migration, the data layer's included,
        names = [m.name for m in first]
        for name in (
            "credits",
            "stories_and_jobs",
            "job_functions",
            "cancel_and_sweep",
            "job_reads",
            "realtime_and_dashboard",
            "admin_functions",
            "fence_cap_and_liveness",
            "idempotency_keys",
        ):
            assert name in names
        # and the second applies nothing and changes nothing
        assert second == []
        assert fingerprint(url) == before
        with psycopg.connect(url) as conn:
            row = conn.execute("select public.queue_counts() ->> 'pending'").fetchone()
        assert row == ("0",)
    finally:
        drop_database(url)


def test_the_fence_migration_keeps_existing_jobs_and_keys(
    postgres_server_url: str, tmp_path: Path
) -> None:
    # Given a database migrated up to before fencing tokens, holding two jobs, one of them
    # enqueued with an idempotency key
    before = tmp_path / "migrations"
    before.mkdir()
    for migration in sorted(migrations_dir().glob("*.sql")):
        if migration.name < FENCE_MIGRATION:
            (before / migration.name).symlink_to(migration)
    url = make_conninfo(postgres_server_url, dbname=f"storyq_fence_{uuid.uuid4().hex[:10]}")
    drop_database(url)
    try:
        migrate(url, before)
        user = uuid.uuid4()
        ensure_user(url, user)
        with psycopg.connect(url) as conn:
            conn.execute("select public.grant_credits(%s, 5)", (user,))
            for key in ("click-1", None):
                conn.execute(
                    "select public.enqueue_story_job(%s, 'a fjord', null, null, 'en', 500, 1, 3,"
                    " %s, %s, 0)",
                    (user, key, f"hash:{key}" if key else None),
                )

        # When the rest of the migrations are applied
        applied = [m.name for m in migrate(url, migrations_dir())]

        # Then each job has a fence of its own, new jobs draw larger ones, and the key replays
        assert "fence_cap_and_liveness" in applied
        with psycopg.connect(url) as conn:
            fences = [
                row[0] for row in conn.execute("select fence from public.story_jobs order by fence")
            ]
            new = conn.execute(
                "select public.enqueue_story_job(%s, 'a fjord', null, null, 'en', 500, 1, 3)",
                (user,),
            ).fetchone()
            replay = conn.execute(
                "select public.enqueue_story_job(%s, 'a fjord', null, null, 'en', 500, 1, 3,"
                " 'click-1', 'hash:click-1')",
                (user,),
            ).fetchone()
        assert len(set(fences)) == 2
        assert None not in fences
        assert new is not None
        assert replay is not None
        assert new[0]["fence"] > max(fences)
        assert (replay[0]["replayed"], replay[0]["fence"] in fences) == (True, True)
    finally:
        drop_database(url)
