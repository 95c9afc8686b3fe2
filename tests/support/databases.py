"""Compatibility path: `storyq_local.stack.postgres` owns scratch databases now (bench/ uses
them too, and may not import tests). Kept only while tests/pgtap.sh imports from here; import
from storyq_local.stack.postgres instead."""

from storyq_local.stack.postgres import create_scratch_database, drop_database, migrations_dir

__all__ = ["create_scratch_database", "drop_database", "migrations_dir"]
