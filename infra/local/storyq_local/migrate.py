"""Compatibility path: `storyq_local.stack.migrate` owns this now. Kept only while files outside the
stack's owners still import from here; import from `storyq_local.stack.migrate` instead."""

from storyq_local.stack.migrate import (
    Migration,
    bootstrap_sql,
    ensure_database,
    find_migrations,
    migrate,
)

__all__ = [
    "Migration",
    "bootstrap_sql",
    "ensure_database",
    "find_migrations",
    "migrate",
]
