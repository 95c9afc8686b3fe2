"""`storyq migrate`: the Supabase-compat bootstrap and the migrations, applied once."""

from __future__ import annotations

import psycopg

from storyq_local.stack.migrate import find_migrations, migrate
from storyq_local.stack.postgres import create_scratch_database, drop_database, migrations_dir


def test_second_run_applies_nothing(postgres_server_url: str) -> None:
    # Given an empty database migrated once
    url = create_scratch_database(postgres_server_url, prefix="storyq_migrate")
    try:
        # When migrate runs again
        applied = migrate(url, migrations_dir())
        # Then nothing is applied and every migration is recorded exactly once
        assert applied == []
        with psycopg.connect(url) as conn:
            versions = [
                row[0]
                for row in conn.execute(
                    "select version from supabase_migrations.schema_migrations order by version"
                )
            ]
        assert versions == [m.version for m in find_migrations(migrations_dir())]
    finally:
        drop_database(url)


def test_bootstrap_recreates_what_supabase_provides(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        roles = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "select rolname, rolbypassrls, rolcanlogin from pg_roles"
                " where rolname in ('anon', 'authenticated', 'service_role')"
            )
        }
        assert roles == {
            "anon": (False, False),
            "authenticated": (False, False),
            "service_role": (True, False),
        }
        publication = conn.execute(
            "select count(*) from pg_publication where pubname = 'supabase_realtime'"
        ).fetchone()
        assert publication == (1,)

        # auth.uid(), auth.role() and auth.jwt() read the claims PostgREST sets per request
        with conn.transaction():
            conn.execute(
                "select set_config('request.jwt.claims', %s, true)",
                ('{"sub":"2b7c9a52-7d43-4c8e-9a55-8a0d0b6f0c11","role":"authenticated"}',),
            )
            row = conn.execute(
                "select auth.uid()::text, auth.role(), auth.jwt() ->> 'sub'"
            ).fetchone()
        assert row == (
            "2b7c9a52-7d43-4c8e-9a55-8a0d0b6f0c11",
            "authenticated",
            "2b7c9a52-7d43-4c8e-9a55-8a0d0b6f0c11",
        )
