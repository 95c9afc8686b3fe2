"""The data layer's migrations on an empty database: applied once, the second run a no-op."""

from __future__ import annotations

import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from storyq_local.migrate import migrate
from tests.support.databases import drop_database, migrations_dir

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
